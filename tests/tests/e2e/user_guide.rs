//! The user guide (docs/user-guide/) runs: every command in it is executed
//! here, page by page and in order, against a `hack/local-up.sh` cluster
//! with two NetworkManager nodes, and what it prints is compared with what
//! the guide says it prints. So the guide cannot drift from the product.
//!
//! The guide's format (docs/user-guide/README.md says it for writers):
//!
//! - A fenced block whose info string is `sh` is a step: its whole text
//!   runs in one `sh -e -c`, with `KUBECONFIG` set to local-up's admin
//!   kubeconfig, `kubectl` the machine's, and one working directory for the
//!   whole guide (so a file a step writes is there for the next steps).
//!   Standard error goes where standard output goes. The step fails when
//!   the shell exits non-zero.
//! - A fenced block whose info string is `text`, directly after a step
//!   (only blank lines between), is that step's expected output, compared
//!   loosely: each of its lines must match a line of the output, in order,
//!   other output lines in between allowed; runs of whitespace count as
//!   one space; `...` inside a line stands for any text; a line that is
//!   only `...` marks left-out output and matches nothing.
//! - No other fenced blocks: everything a page shows runs or is checked.
//!   Steps do not `sleep`; what waits is `kubectl wait` with a timeout.
//!
//! Needs root (network namespaces), `jq` and `curl` (the guide uses them),
//! and the binaries built (`cargo build -p nmstate-apiserver -p
//! nmstate-agent`).

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use nmstate_e2e::{cluster::node_reported, kubectl::Kubectl, netns::LocalUp};
use tokio::process::Command;

/// The longest one step may run (its own `kubectl wait --timeout`s are
/// shorter); a bound for failing, not a measurement.
const STEP_LIMIT: Duration = Duration::from_secs(300);

/// One runnable step of a page.
#[derive(Debug)]
struct Step {
    /// The 1-based line of the opening fence, for messages.
    line: usize,
    /// The shell text.
    script: String,
    /// The expected output, if the guide shows one.
    expected: Option<String>,
}

/// A fenced block of a page.
#[derive(Debug)]
struct Block {
    line: usize,
    info: String,
    text: String,
    /// Whether only blank lines separate it from the previous block.
    follows_previous: bool,
}

fn guide_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/user-guide")
}

/// The guide's pages, in reading order (their file names sort so).
fn pages() -> Result<Vec<PathBuf>> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(guide_dir())?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<std::io::Result<_>>()?;
    pages.retain(|path| path.extension().is_some_and(|ext| ext == "md"));
    pages.sort();
    Ok(pages)
}

/// The fenced blocks of a Markdown page.
fn blocks(page: &str) -> Result<Vec<Block>> {
    let mut blocks = Vec::new();
    let mut lines = page.lines().enumerate();
    let mut only_blank_since_last = false;
    while let Some((index, line)) = lines.next() {
        let Some(info) = line.trim_start().strip_prefix("```") else {
            if !line.trim().is_empty() {
                only_blank_since_last = false;
            }
            continue;
        };
        let mut text = String::new();
        let mut closed = false;
        for (_, line) in lines.by_ref() {
            if line.trim_start().starts_with("```") {
                closed = true;
                break;
            }
            text.push_str(line);
            text.push('\n');
        }
        ensure!(closed, "line {}: a fenced block is not closed", index + 1);
        blocks.push(Block {
            line: index + 1,
            info: info.trim().to_owned(),
            text,
            follows_previous: only_blank_since_last,
        });
        only_blank_since_last = true;
    }
    Ok(blocks)
}

/// The steps of a page, checking its blocks against the format.
fn steps(page: &str) -> Result<Vec<Step>> {
    let mut steps: Vec<Step> = Vec::new();
    for block in blocks(page)? {
        match block.info.as_str() {
            "sh" => {
                ensure!(
                    !block
                        .text
                        .split(|c: char| !c.is_ascii_alphanumeric())
                        .any(|word| word == "sleep"),
                    "line {}: a step sleeps; wait with `kubectl wait --timeout` instead",
                    block.line
                );
                steps.push(Step {
                    line: block.line,
                    script: block.text,
                    expected: None,
                });
            }
            "text" => {
                let step = steps
                    .last_mut()
                    .filter(|step| step.expected.is_none() && block.follows_previous)
                    .with_context(|| {
                        format!(
                            "line {}: an output block that follows no command block",
                            block.line
                        )
                    })?;
                step.expected = Some(block.text);
            }
            other => bail!(
                "line {}: a ```{other} block: the guide has only ```sh (run) and ```text (checked output) blocks",
                block.line
            ),
        }
    }
    Ok(steps)
}

/// Whitespace runs as one space, trimmed.
fn normalize(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether `actual` matches the expected `pattern` (both normalized):
/// literally, with `...` standing for any text.
fn line_matches(pattern: &str, actual: &str) -> bool {
    let pieces: Vec<&str> = pattern.split("...").map(str::trim).collect();
    let [first, middle @ .., last] = pieces.as_slice() else {
        return pattern == actual;
    };
    let Some(mut rest) = actual.strip_prefix(first) else {
        return false;
    };
    for piece in middle {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// The first expected line not found in `output`, in order, if any.
fn missing_line(expected: &str, output: &str) -> Option<String> {
    let actual: Vec<String> = output.lines().map(normalize).collect();
    let mut next = 0;
    for pattern in expected.lines().map(normalize) {
        if pattern.is_empty() || pattern == "..." {
            continue;
        }
        match actual[next..]
            .iter()
            .position(|line| line_matches(&pattern, line))
        {
            Some(at) => next += at + 1,
            None => return Some(pattern),
        }
    }
    None
}

/// Runs one step; its combined output and exit code.
async fn run_step(step: &Step, env: &GuideEnv) -> Result<(Option<i32>, String)> {
    let output = Command::new("sh")
        .arg("-e")
        .arg("-c")
        // Standard error interleaved with standard output, as a terminal
        // shows them.
        .arg(format!("exec 2>&1\n{}", step.script))
        .current_dir(&env.workdir)
        .env("KUBECONFIG", &env.kubeconfig)
        .env("KUBECACHEDIR", &env.cache)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(STEP_LIMIT, output)
        .await
        .with_context(|| format!("did not finish within {STEP_LIMIT:?}"))??;
    Ok((
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    ))
}

/// Where the steps run.
struct GuideEnv {
    kubeconfig: PathBuf,
    workdir: PathBuf,
    cache: PathBuf,
}

/// The logs worth reading when a step fails.
fn logs(local: &LocalUp) -> String {
    ["apiserver", "node-1", "node-2"]
        .iter()
        .map(|name| {
            let log = local.process_log(name);
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!("--- {name}.log (last 40 lines)\n{}", tail.join("\n"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_guide_s_pages_are_in_the_runnable_format() -> Result<()> {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let pages = pages()?;
    ensure!(pages.len() >= 3, "the guide's pages are missing: {pages:?}");
    for page in pages {
        let text = std::fs::read_to_string(&page)?;
        steps(&text).with_context(|| page.display().to_string())?;
    }
    Ok(())
}

#[test]
fn loose_output_comparison() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let output =
        "NAME     INTERFACES   LAST UPDATE   AGE\nnode-1   4   16s   16s\nnode-2   4   15s   15s\n";
    assert_eq!(
        missing_line(
            "NAME INTERFACES ...\nnode-1 4 ...\n...\nnode-2 ... 15s",
            output
        ),
        None
    );
    assert_eq!(
        missing_line("node-2 ...\nnode-1 ...", output),
        Some("node-1 ...".to_owned()),
        "in order"
    );
    assert_eq!(
        missing_line("node-3 ...", output),
        Some("node-3 ...".to_owned())
    );
    assert!(line_matches("a ... c", "a b c"));
    assert!(line_matches("...c", "abc"));
    assert!(!line_matches("a ... c", "a b c d"));
    assert!(
        !line_matches("node-1", "node-1 4"),
        "a line without ... is whole"
    );
}

#[tokio::test]
async fn every_command_of_the_user_guide_runs_against_local_up_and_prints_what_the_guide_shows()
-> Result<()> {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let started = Instant::now();
    for tool in ["jq", "curl"] {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()?
            .success();
        ensure!(
            found,
            "the user guide uses `{tool}`: install it (hack/setup-deps.sh)"
        );
    }
    let pages: Vec<(PathBuf, Vec<Step>)> = pages()?
        .into_iter()
        .map(|page| {
            let text = std::fs::read_to_string(&page)?;
            let steps = steps(&text).with_context(|| page.display().to_string())?;
            Ok((page, steps))
        })
        .collect::<Result<_>>()?;

    let local = LocalUp::start(2, &[]).await?;
    let kubectl = Kubectl::new(&local.admin_kubeconfig())?;
    for node in ["node-1", "node-2"] {
        node_reported(&kubectl, node).await?;
    }
    let workdir = tempfile::Builder::new().prefix("nmst-guide").tempdir()?;
    let env = GuideEnv {
        kubeconfig: local.admin_kubeconfig(),
        workdir: workdir.path().to_path_buf(),
        cache: workdir.path().join(".kube-cache"),
    };
    eprintln!("local-up ready after {:?}", started.elapsed());

    for (page, steps) in &pages {
        let name = page.file_name().unwrap_or_default().to_string_lossy();
        for step in steps {
            let step_started = Instant::now();
            let (code, output) = run_step(step, &env)
                .await
                .with_context(|| format!("{name}:{}: {}", step.line, step.script))?;
            eprintln!(
                "{name}:{} ({:.1?}): {}",
                step.line,
                step_started.elapsed(),
                step.script.lines().next().unwrap_or_default()
            );
            let context = || {
                format!(
                    "{name}:{}\n$ {}--- output (exit code {code:?})\n{output}\n{}",
                    step.line,
                    step.script,
                    logs(&local)
                )
            };
            ensure!(code == Some(0), "a step of the guide failed: {}", context());
            if let Some(expected) = &step.expected
                && let Some(line) = missing_line(expected, &output)
            {
                bail!(
                    "the output does not show what the guide says: no line matches\n    {line}\n{}",
                    context()
                );
            }
        }
    }
    eprintln!("the whole guide ran in {:?}", started.elapsed());
    Ok(())
}
