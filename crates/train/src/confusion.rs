//! `confusion.svg`: the test split's confusion matrix as a heat map (rows = true class,
//! columns = predicted class; each cell's shade is its share of the row, so a class's recall
//! reads along the diagonal whatever the class sizes).

use anyhow::Result;
use std::fmt::Write;
use std::path::Path;

/// The figure's file name in the run directory.
pub const FILE: &str = "confusion.svg";

/// The SVG of `counts[truth][predicted]` with the class names on both axes.
pub fn to_svg(counts: &[Vec<u64>], class_names: &[String], title: &str) -> String {
    let n = counts.len().max(1);
    let cell = if n <= 10 { 48.0 } else { (480.0 / n as f64).max(8.0) };
    let label_w = 12.0 + 7.0 * class_names.iter().map(|c| c.chars().count().min(24)).max().unwrap_or(1) as f64;
    let (left, top) = (label_w + 28.0, 48.0 + label_w);
    let (width, height) = (left + cell * n as f64 + 20.0, top + cell * n as f64 + 20.0);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ =
        write!(s, r#"<text x="{:.1}" y="20" text-anchor="middle" font-size="14">{}</text>"#, width / 2.0, esc(title));
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="38" text-anchor="middle">predicted class</text><text transform="translate(14 {:.1}) rotate(-90)" text-anchor="middle">true class</text>"#,
        left + cell * n as f64 / 2.0,
        top + cell * n as f64 / 2.0
    );
    let short = |name: &str| -> String {
        let c: String = name.chars().take(24).collect();
        esc(&c)
    };
    for (i, name) in class_names.iter().enumerate().take(n) {
        let y = top + cell * (i as f64 + 0.5);
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{y:.1}" text-anchor="end" dominant-baseline="middle">{}</text>"#,
            left - 6.0,
            short(name)
        );
        let x = left + cell * (i as f64 + 0.5);
        let _ = write!(
            s,
            r#"<text transform="translate({x:.1} {:.1}) rotate(-60)" text-anchor="start" dominant-baseline="middle">{}</text>"#,
            top - 6.0,
            short(name)
        );
    }
    for (t, row) in counts.iter().enumerate() {
        let total: u64 = row.iter().sum();
        for (p, &c) in row.iter().enumerate() {
            let share = if total == 0 { 0.0 } else { c as f64 / total as f64 };
            // White to dark blue by the share of the row.
            let shade = |lo: f64, hi: f64| (lo + (hi - lo) * share).round() as u8;
            let (x, y) = (left + cell * p as f64, top + cell * t as f64);
            let _ = write!(
                s,
                r##"<rect x="{x:.1}" y="{y:.1}" width="{cell:.1}" height="{cell:.1}" fill="#{:02x}{:02x}{:02x}" stroke="#ccc"><title>true {} / predicted {}: {c} ({:.1}% of the row)</title></rect>"##,
                shade(255.0, 8.0),
                shade(255.0, 48.0),
                shade(255.0, 107.0),
                short(class_names.get(t).map_or("", |s| s)),
                short(class_names.get(p).map_or("", |s| s)),
                100.0 * share
            );
            if cell >= 24.0 {
                let fill = if share > 0.5 { "white" } else { "black" };
                let _ = write!(
                    s,
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" dominant-baseline="middle" fill="{fill}">{c}</text>"#,
                    x + cell / 2.0,
                    y + cell / 2.0
                );
            }
        }
    }
    s.push_str("</svg>\n");
    s
}

/// Writes [`to_svg`] to `path` atomically.
pub fn write(path: &Path, counts: &[Vec<u64>], class_names: &[String], title: &str) -> Result<()> {
    crate::atomic::write(path, to_svg(counts, class_names, title).as_bytes())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_names_and_escaping() {
        let svg = super::to_svg(&[vec![5, 1], vec![0, 3]], &["a<b".into(), "pos".into()], "test");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains(">5</text>") && svg.contains(">3</text>") && svg.contains("a&lt;b"));
        // Each of the four cells, and a full row share is the darkest shade.
        assert_eq!(svg.matches("<rect x=").count(), 4);
        assert!(svg.contains("fill=\"#08306b\""));
    }
}
