//! `ustack bench --svg FILE`: the table as grouped horizontal bars, one group per row, one
//! bar per stack, each group scaled to its own largest value (the rows have different
//! units), with the value and unit written beside every bar. Hand-written SVG: a few
//! dozen elements do not need a plotting crate.

use std::fmt::Write;

use super::{Better, Cell, Row, COLUMNS, KERNEL, SMOLTCP};

const WIDTH: f64 = 960.0;
const LABEL_W: f64 = 300.0;
const BAR_MAX: f64 = 520.0;
const BAR_H: f64 = 16.0;
const GAP: f64 = 3.0;
const GROUP_PAD: f64 = 14.0;
const TOP: f64 = 58.0;
const COLOURS: [&str; 3] = ["#7f7f7f", "#1f77b4", "#ff7f0e"];

/// Text content with XML's special characters escaped.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The whole document.
pub fn render(rows: &[Row]) -> String {
    let group_h = 3.0 * (BAR_H + GAP) + GROUP_PAD;
    let height = TOP + rows.len() as f64 * group_h + 20.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="20" font-size="16" font-weight="bold">ustack bench: kernel, ustack and smoltcp (medians)</text>"#
    );
    for (i, (name, colour)) in COLUMNS.iter().zip(COLOURS).enumerate() {
        let x = 10.0 + i as f64 * 110.0;
        let _ = writeln!(
            s,
            r#"<rect x="{x}" y="32" width="12" height="12" fill="{colour}"/><text x="{}" y="43">{name}</text>"#,
            x + 16.0
        );
    }
    for (g, row) in rows.iter().enumerate() {
        let y0 = TOP + g as f64 * group_h;
        let better = match row.spec.better {
            Better::Higher => "higher is better",
            Better::Lower => "lower is better",
        };
        let ratios: String = [(KERNEL, "kernel"), (SMOLTCP, "smoltcp")]
            .iter()
            .filter_map(|&(vs, name)| Some(format!("ustack/{name} {:.2}x", row.ratio(vs)?)))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            s,
            r##"<text x="10" y="{}" font-weight="bold">{}</text><text x="10" y="{}" fill="#555555">{}, {better}</text><text x="10" y="{}" fill="#555555">{}</text>"##,
            y0 + 14.0,
            esc(row.spec.what.trim()),
            y0 + 30.0,
            esc(row.spec.unit),
            y0 + 46.0,
            esc(&ratios),
        );
        let max = row
            .cells
            .iter()
            .filter_map(Cell::median)
            .fold(0.0_f64, f64::max);
        for (i, cell) in row.cells.iter().enumerate() {
            let y = y0 + i as f64 * (BAR_H + GAP);
            let (w, label) = match cell.median() {
                Some(v) if max > 0.0 => (
                    (v / max * BAR_MAX).max(1.0),
                    format!("{} {}", super::fmt_value(v), row.spec.unit),
                ),
                _ => (0.0, cell.show()),
            };
            let _ = writeln!(
                s,
                r#"<rect x="{LABEL_W}" y="{y}" width="{w:.1}" height="{BAR_H}" fill="{}"><title>{}: {}</title></rect><text x="{:.1}" y="{:.1}">{}</text>"#,
                COLOURS[i],
                COLUMNS[i],
                esc(&label),
                LABEL_W + w + 6.0,
                y + BAR_H - 4.0,
                esc(&label),
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::super::{RowSpec, MEASUREMENTS};
    use super::*;

    /// Every row of the table (a measured, a missing and a not-applicable cell among them)
    /// becomes a bar group, and the arrows in row names are escaped.
    #[test]
    fn every_row_is_a_group_and_text_is_escaped() {
        let specs: Vec<&'static RowSpec> = MEASUREMENTS.iter().flat_map(|m| m.rows).collect();
        let rows: Vec<Row> = specs
            .iter()
            .map(|spec| Row {
                spec,
                cells: [
                    Cell::Measured(vec![1.0, 3.0, 2.0]),
                    Cell::NotBuilt("no --offload".into()),
                    Cell::NotApplicable,
                ],
            })
            .collect();
        let svg = render(&rows);
        assert_eq!(svg.matches("<rect x=\"300\"").count(), 3 * rows.len());
        assert!(svg.contains("2.00 Gbit/s") && svg.contains("not built"));
        assert!(svg.contains("client -&gt; discard") && !svg.contains("client -> discard"));
        assert!(svg.trim_end().ends_with("</svg>"));
    }
}
