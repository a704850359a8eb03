//! `show --graph png`: the SVG of [`crate::show::svg`] rasterised with
//! resvg (pure Rust: usvg parses, tiny-skia draws, PNG out), at one pixel
//! per SVG unit.
//!
//! Text needs a font, and the plugin bundles none: it reads the fonts
//! installed on the machine (fontdb: fontconfig's directories on Linux,
//! the system and user font folders on macOS and Windows), the same ones
//! a browser would show the SVG with. The SVG asks for `sans-serif`; when
//! the system's configured sans-serif family is not installed, a common
//! one that is (DejaVu Sans, Liberation Sans, ...) or else any installed
//! family takes its place. With no font at all the command fails and says
//! so, rather than drawing boxes without their names. This module and
//! [`crate::client`] are the plugin's only IO.

use resvg::{
    tiny_skia,
    usvg::{self, fontdb},
};

/// Why no PNG could be drawn.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No font is installed where the system keeps fonts.
    #[error(
        "no font found in the system's font directories to draw the PNG's text with: \
         install one (e.g. Debian's fonts-dejavu-core), or use --graph svg"
    )]
    NoFont,
    /// The SVG could not be read (a bug in the plugin's own SVG).
    #[error("reading the SVG: {0}")]
    Svg(#[source] usvg::Error),
    /// The picture has no area or is too large to draw.
    #[error("cannot draw a {width}x{height} picture")]
    Size {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// The pixels could not be encoded as PNG.
    #[error("encoding the PNG: {0}")]
    Encode(String),
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Families tried, in order, when the system's sans-serif is missing.
const SANS_SERIF: [&str; 6] = [
    "DejaVu Sans",
    "Liberation Sans",
    "Noto Sans",
    "Arial",
    "Helvetica",
    "FreeSans",
];

/// The PNG of `svg`, its text set in one of the system's fonts.
pub fn png(svg: &str) -> Result<Vec<u8>> {
    let mut options = usvg::Options::default();
    let fonts = options.fontdb_mut();
    fonts.load_system_fonts();
    choose_sans_serif(fonts)?;
    let tree = usvg::Tree::from_str(svg, &options).map_err(Error::Svg)?;
    let size = tree.size().to_int_size();
    let (width, height) = (size.width(), size.height());
    let mut pixmap = tiny_skia::Pixmap::new(width, height).ok_or(Error::Size { width, height })?;
    resvg::render(
        &tree,
        tiny_skia::Transform::identity(),
        &mut pixmap.as_mut(),
    );
    pixmap
        .encode_png()
        .map_err(|error| Error::Encode(error.to_string()))
}

/// Makes `sans-serif` name an installed family: the one configured if it
/// is installed, else the first of [`SANS_SERIF`] that is, else any.
fn choose_sans_serif(fonts: &mut fontdb::Database) -> Result<()> {
    let installed = |fonts: &fontdb::Database, family: &str| {
        fonts
            .faces()
            .any(|face| face.families.iter().any(|(name, _)| name == family))
    };
    let configured = fonts.family_name(&fontdb::Family::SansSerif).to_owned();
    if installed(fonts, &configured) {
        return Ok(());
    }
    let family = SANS_SERIF
        .iter()
        .find(|family| installed(fonts, family))
        .map(|family| (*family).to_owned())
        .or_else(|| {
            fonts
                .faces()
                .find_map(|face| face.families.first().map(|(name, _)| name.clone()))
        })
        .ok_or(Error::NoFont)?;
    fonts.set_sans_serif_family(family);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn no_font_is_a_clear_error() {
        let mut fonts = fontdb::Database::new();
        let error = choose_sans_serif(&mut fonts).unwrap_err();
        assert!(matches!(error, Error::NoFont), "{error:?}");
        assert!(error.to_string().contains("fonts-dejavu-core"), "{error}");
    }
}
