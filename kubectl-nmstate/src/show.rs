//! `show NODE`: a node's interfaces from its reported state, as a table, as
//! Graphviz dot text, or as an SVG drawn by a small layered layout of our
//! own (no Graphviz needed at run time).
//!
//! The picture's nodes are the interfaces (loopback left out) and their IP
//! addresses; its edges go from a port to its controller (bridge, bond),
//! from a VLAN to its base interface, and from an interface to each of its
//! addresses.

use std::{collections::BTreeMap, fmt::Write as _};

use serde_json::Value;

/// One interface, as the table and the picture see it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Interface {
    /// `name`.
    pub name: String,
    /// `type`.
    pub kind: String,
    /// `state`.
    pub state: String,
    /// IPv4 then IPv6 addresses, `ip/prefix`.
    pub addresses: Vec<String>,
    /// `controller`: the bridge or bond this interface is a port of.
    pub controller: Option<String>,
    /// Ports of a bridge or bond.
    pub ports: Vec<String>,
    /// `vlan.base-iface` (or `mac-vlan`/`vxlan` base).
    pub base: Option<String>,
    /// `mtu`.
    pub mtu: Option<u64>,
}

/// The interfaces of an nmstate document, in its order.
pub fn interfaces(state: &Value) -> Vec<Interface> {
    let text = |value: &Value| value.as_str().map(str::to_owned);
    let names = |value: &Value| -> Vec<String> {
        value
            .as_array()
            .map(|ports| {
                ports
                    .iter()
                    .filter_map(|port| text(&port["name"]).or_else(|| text(port)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut list = Vec::new();
    for iface in state["interfaces"].as_array().into_iter().flatten() {
        let mut addresses = Vec::new();
        for family in ["ipv4", "ipv6"] {
            for address in iface[family]["address"].as_array().into_iter().flatten() {
                if let (Some(ip), Some(prefix)) =
                    (address["ip"].as_str(), address["prefix-length"].as_u64())
                {
                    addresses.push(format!("{ip}/{prefix}"));
                }
            }
        }
        let mut ports = names(&iface["bridge"]["port"]);
        ports.extend(names(&iface["link-aggregation"]["port"]));
        let base = ["vlan", "mac-vlan", "vxlan", "mac-vtap"]
            .iter()
            .find_map(|kind| text(&iface[*kind]["base-iface"]));
        list.push(Interface {
            name: text(&iface["name"]).unwrap_or_default(),
            kind: text(&iface["type"]).unwrap_or_default(),
            state: text(&iface["state"]).unwrap_or_default(),
            addresses,
            controller: text(&iface["controller"]),
            ports,
            base,
            mtu: iface["mtu"].as_u64(),
        });
    }
    // A port names its controller even when the state leaves `controller`
    // out.
    let controllers: BTreeMap<String, String> = list
        .iter()
        .flat_map(|iface| {
            iface
                .ports
                .iter()
                .map(|port| (port.clone(), iface.name.clone()))
        })
        .collect();
    for iface in &mut list {
        if iface.controller.is_none() {
            iface.controller = controllers.get(&iface.name).cloned();
        }
    }
    list
}

/// The table `show NODE` prints.
pub fn table(interfaces: &[Interface]) -> String {
    let header = [
        "NAME",
        "TYPE",
        "STATE",
        "ADDRESSES",
        "CONTROLLER/PORTS",
        "MTU",
    ]
    .map(str::to_owned);
    let rows: Vec<[String; 6]> = interfaces
        .iter()
        .map(|iface| {
            let mut links = Vec::new();
            if !iface.ports.is_empty() {
                links.push(format!("ports: {}", iface.ports.join(",")));
            }
            if let Some(base) = &iface.base {
                links.push(format!("base: {base}"));
            }
            if let Some(controller) = &iface.controller {
                links.push(format!("controller: {controller}"));
            }
            let links = if links.is_empty() {
                "-".to_owned()
            } else {
                links.join("; ")
            };
            [
                iface.name.clone(),
                iface.kind.clone(),
                iface.state.clone(),
                if iface.addresses.is_empty() {
                    "-".to_owned()
                } else {
                    iface.addresses.join(",")
                },
                links,
                iface
                    .mtu
                    .map_or_else(|| "-".to_owned(), |mtu| mtu.to_string()),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|cell| cell.len());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (index, (cell, width)) in row.iter().zip(widths).enumerate() {
            if index + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}   ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// What the picture holds: its nodes and edges, laid out in layers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Graph {
    /// Graph nodes: interfaces and addresses.
    pub nodes: Vec<GraphNode>,
    /// Edges between node ids.
    pub edges: Vec<GraphEdge>,
}

/// A node of the picture.
#[derive(Clone, Debug, PartialEq)]
pub struct GraphNode {
    /// Unique id (`iface:NAME` or `addr:IP/PREFIX`).
    pub id: String,
    /// First line of its label.
    pub label: String,
    /// Second line (type and state), empty for addresses.
    pub detail: String,
    /// Whether it is an address.
    pub address: bool,
    /// Layer: 0 for physical interfaces, upwards for what stacks on them.
    pub layer: usize,
}

/// An edge of the picture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphEdge {
    /// From (the lower layer: a port, a VLAN's base, an interface).
    pub from: String,
    /// To (a controller, a VLAN, an address).
    pub to: String,
    /// `port`, `vlan` or `ip`.
    pub label: String,
}

/// The picture of `interfaces`.
pub fn graph(interfaces: &[Interface]) -> Graph {
    let shown: Vec<&Interface> = interfaces
        .iter()
        .filter(|iface| iface.kind != "loopback")
        .collect();
    let by_name: BTreeMap<&str, &Interface> = shown
        .iter()
        .map(|iface| (iface.name.as_str(), *iface))
        .collect();
    // An interface sits one layer above everything it stacks on; depth is
    // bounded so that a cycle in a broken state cannot loop.
    fn layer(name: &str, by_name: &BTreeMap<&str, &Interface>, depth: usize) -> usize {
        let Some(iface) = by_name.get(name) else {
            return 0;
        };
        if depth > by_name.len() {
            return 0;
        }
        let below = iface.ports.iter().chain(iface.base.iter());
        below
            .map(|lower| layer(lower, by_name, depth + 1) + 1)
            .max()
            .unwrap_or(0)
    }
    let mut graph = Graph::default();
    for iface in &shown {
        let id = format!("iface:{}", iface.name);
        let level = layer(&iface.name, &by_name, 0);
        graph.nodes.push(GraphNode {
            id: id.clone(),
            label: iface.name.clone(),
            detail: format!("{} {}", iface.kind, iface.state),
            address: false,
            layer: level,
        });
        for port in &iface.ports {
            graph.edges.push(GraphEdge {
                from: format!("iface:{port}"),
                to: id.clone(),
                label: "port".to_owned(),
            });
        }
        if let Some(base) = &iface.base {
            graph.edges.push(GraphEdge {
                from: format!("iface:{base}"),
                to: id.clone(),
                label: iface.kind.clone(),
            });
        }
        for address in &iface.addresses {
            let address_id = format!("addr:{address}");
            if !graph.nodes.iter().any(|node| node.id == address_id) {
                graph.nodes.push(GraphNode {
                    id: address_id.clone(),
                    label: address.clone(),
                    detail: String::new(),
                    address: true,
                    layer: 0,
                });
            }
            graph.edges.push(GraphEdge {
                from: id.clone(),
                to: address_id,
                label: "ip".to_owned(),
            });
        }
    }
    // Ports of controllers that are not in the state still get a node.
    let known: Vec<String> = graph.nodes.iter().map(|node| node.id.clone()).collect();
    graph
        .edges
        .retain(|edge| known.contains(&edge.from) && known.contains(&edge.to));
    // Addresses sit one layer above the highest interface layer.
    let top = graph
        .nodes
        .iter()
        .filter(|node| !node.address)
        .map(|node| node.layer)
        .max()
        .unwrap_or(0);
    for node in &mut graph.nodes {
        if node.address {
            node.layer = top + 1;
        }
    }
    graph
}

fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The picture as Graphviz dot text.
pub fn dot(node: &str, graph: &Graph) -> String {
    let mut out = format!("digraph {} {{\n  rankdir=BT;\n", quote(node));
    for graph_node in &graph.nodes {
        let (shape, label) = if graph_node.address {
            ("ellipse", graph_node.label.clone())
        } else {
            (
                "box",
                format!("{}\\n{}", graph_node.label, graph_node.detail),
            )
        };
        let _ = writeln!(
            out,
            "  {} [shape={shape}, label=\"{label}\"];",
            quote(&graph_node.id)
        );
    }
    for edge in &graph.edges {
        let _ = writeln!(
            out,
            "  {} -> {} [label={}];",
            quote(&edge.from),
            quote(&edge.to),
            quote(&edge.label)
        );
    }
    out.push_str("}\n");
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const BOX_WIDTH: usize = 150;
const BOX_HEIGHT: usize = 44;
const GAP_X: usize = 30;
const GAP_Y: usize = 70;
const MARGIN: usize = 20;

/// The picture as SVG: one row per layer (physical interfaces at the
/// bottom, addresses on top), nodes in name order within a row, straight
/// edges from the top of the lower node to the bottom of the upper one.
/// Each node is a `<g class="node" id="...">`, each edge a
/// `<g class="edge" data-from="..." data-to="...">`.
pub fn svg(node: &str, graph: &Graph) -> String {
    let layers = graph
        .nodes
        .iter()
        .map(|graph_node| graph_node.layer)
        .max()
        .map_or(0, |top| top + 1);
    let mut rows: Vec<Vec<&GraphNode>> = vec![Vec::new(); layers];
    for graph_node in &graph.nodes {
        rows[graph_node.layer].push(graph_node);
    }
    for row in &mut rows {
        row.sort_by(|a, b| a.label.cmp(&b.label));
    }
    let widest = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width = 2 * MARGIN + widest * BOX_WIDTH + widest.saturating_sub(1) * GAP_X;
    let title_height = 30;
    let height = 2 * MARGIN + title_height + layers * BOX_HEIGHT + layers.saturating_sub(1) * GAP_Y;
    // Position (x of the left edge, y of the top edge) of every node; the
    // top row is the highest layer.
    let mut position: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (layer, row) in rows.iter().enumerate() {
        let row_width = row.len() * BOX_WIDTH + row.len().saturating_sub(1) * GAP_X;
        let left = (width - row_width) / 2;
        let top = MARGIN + title_height + (layers - 1 - layer) * (BOX_HEIGHT + GAP_Y);
        for (index, graph_node) in row.iter().enumerate() {
            position.insert(&graph_node.id, (left + index * (BOX_WIDTH + GAP_X), top));
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">
  <title>{}</title>
  <rect width="100%" height="100%" fill="white"/>
  <text x="{MARGIN}" y="{}" font-size="14" font-weight="bold">{}</text>"#,
        escape(node),
        MARGIN + 14,
        escape(node)
    );
    for edge in &graph.edges {
        let (Some(&(fx, fy)), Some(&(tx, ty))) = (
            position.get(edge.from.as_str()),
            position.get(edge.to.as_str()),
        ) else {
            continue;
        };
        let (x1, y1) = (fx + BOX_WIDTH / 2, fy);
        let (x2, y2) = (tx + BOX_WIDTH / 2, ty + BOX_HEIGHT);
        let _ = writeln!(
            out,
            r##"  <g class="edge" data-from="{}" data-to="{}"><line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#555"/><text x="{}" y="{}" fill="#555">{}</text></g>"##,
            escape(&edge.from),
            escape(&edge.to),
            (x1 + x2) / 2 + 4,
            (y1 + y2) / 2,
            escape(&edge.label)
        );
    }
    for graph_node in &graph.nodes {
        let Some(&(x, y)) = position.get(graph_node.id.as_str()) else {
            continue;
        };
        let centre = x + BOX_WIDTH / 2;
        let shape = if graph_node.address {
            format!(
                r##"<ellipse cx="{centre}" cy="{}" rx="{}" ry="{}" fill="#eef6ee" stroke="#393"/>"##,
                y + BOX_HEIGHT / 2,
                BOX_WIDTH / 2,
                BOX_HEIGHT / 2
            )
        } else {
            format!(
                r##"<rect x="{x}" y="{y}" width="{BOX_WIDTH}" height="{BOX_HEIGHT}" rx="4" fill="#eef2fa" stroke="#336"/>"##
            )
        };
        let text = if graph_node.address {
            format!(
                r#"<text x="{centre}" y="{}" text-anchor="middle">{}</text>"#,
                y + BOX_HEIGHT / 2 + 4,
                escape(&graph_node.label)
            )
        } else {
            format!(
                r#"<text x="{centre}" y="{}" text-anchor="middle" font-weight="bold">{}</text><text x="{centre}" y="{}" text-anchor="middle">{}</text>"#,
                y + 18,
                escape(&graph_node.label),
                y + 34,
                escape(&graph_node.detail)
            )
        };
        let _ = writeln!(
            out,
            r#"  <g class="node" id="{}">{shape}{text}</g>"#,
            escape(&graph_node.id)
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn state() -> Value {
        json!({"interfaces": [
            {"name": "lo", "type": "loopback", "state": "up"},
            {"name": "eth1", "type": "ethernet", "state": "up", "mtu": 1500},
            {"name": "eth2", "type": "ethernet", "state": "up", "mtu": 1500},
            {"name": "bond0", "type": "bond", "state": "up", "link-aggregation": {"mode": "active-backup", "port": ["eth1", "eth2"]}},
            {"name": "bond0.10", "type": "vlan", "state": "up", "vlan": {"base-iface": "bond0", "id": 10}},
            {"name": "br1", "type": "linux-bridge", "state": "up", "mtu": 1500,
             "ipv4": {"enabled": true, "address": [{"ip": "192.0.2.5", "prefix-length": 24}]},
             "bridge": {"port": [{"name": "bond0.10"}]}},
        ]})
    }

    #[test]
    fn layers_stack_ports_vlans_and_bridges() {
        let graph = graph(&interfaces(&state()));
        let layer = |id: &str| graph.nodes.iter().find(|n| n.id == id).unwrap().layer;
        assert_eq!(layer("iface:eth1"), 0);
        assert_eq!(layer("iface:bond0"), 1);
        assert_eq!(layer("iface:bond0.10"), 2);
        assert_eq!(layer("iface:br1"), 3);
        assert_eq!(layer("addr:192.0.2.5/24"), 4);
        assert!(!graph.nodes.iter().any(|n| n.id == "iface:lo"));
        assert_eq!(graph.edges.len(), 5);
    }

    #[test]
    fn table_names_controllers_and_ports() {
        let table = table(&interfaces(&state()));
        assert!(table.contains("eth1"), "{table}");
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("eth1") && l.contains("controller: bond0"))
        );
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("bond0 ") && l.contains("ports: eth1,eth2"))
        );
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("bond0.10") && l.contains("base: bond0"))
        );
    }
}
