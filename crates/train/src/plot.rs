//! Small self-contained SVG drawing: line plots (forecast against truth, learning curves).
//! No dependency: the output is plain SVG 1.1 text that browsers and image viewers open.
//!
//! ```
//! use train::plot::{LinePlot, Series};
//! let svg = LinePlot::new("forecast")
//!     .labels("step", "value")
//!     .series(Series::new("truth", vec![(0.0, 1.0), (1.0, 2.0)]))
//!     .series(Series::new("forecast", vec![(0.0, 1.1), (1.0, 1.8)]).dashed())
//!     .to_svg();
//! assert!(svg.starts_with("<svg") && svg.contains("forecast"));
//! ```
//!
//! Other drawings (heatmaps, attention maps) belong here too, sharing [`escape`],
//! [`nice_ticks`] and [`PALETTE`].

use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::Path;

/// Colour-blind-safe default colours (Okabe & Ito), used in series order.
pub const PALETTE: [&str; 8] = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"];

/// One polyline with a legend entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// (x, y) points in drawing order; non-finite points break the line.
    pub points: Vec<(f64, f64)>,
    /// CSS colour; `None` = the palette colour of the series' position.
    pub color: Option<String>,
    /// Drawn dashed.
    pub dashed: bool,
}

impl Series {
    /// A series with the palette's colour, solid.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self { name: name.into(), points, color: None, dashed: false }
    }
    /// Draws the series in this CSS colour.
    pub fn color(mut self, c: impl Into<String>) -> Self {
        self.color = Some(c.into());
        self
    }
    /// Draws the series dashed.
    pub fn dashed(mut self) -> Self {
        self.dashed = true;
        self
    }
}

/// A line plot with axes, ticks, a legend and optional vertical markers.
#[derive(Debug, Clone, PartialEq)]
pub struct LinePlot {
    /// Title above the plot.
    pub title: String,
    /// x-axis label.
    pub x_label: String,
    /// y-axis label.
    pub y_label: String,
    /// The lines, in legend order.
    pub series: Vec<Series>,
    /// Vertical lines (x position, label), e.g. where the forecast starts.
    pub markers: Vec<(f64, String)>,
    /// Width in pixels.
    pub width: f64,
    /// Height in pixels.
    pub height: f64,
}

impl LinePlot {
    /// An empty plot of the default size.
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            x_label: String::new(),
            y_label: String::new(),
            series: Vec::new(),
            markers: Vec::new(),
            width: 900.0,
            height: 420.0,
        }
    }
    /// Sets the axis labels.
    pub fn labels(mut self, x: impl Into<String>, y: impl Into<String>) -> Self {
        self.x_label = x.into();
        self.y_label = y.into();
        self
    }
    /// Adds a line.
    pub fn series(mut self, s: Series) -> Self {
        self.series.push(s);
        self
    }
    /// Adds a vertical marker at `x`.
    pub fn marker(mut self, x: f64, label: impl Into<String>) -> Self {
        self.markers.push((x, label.into()));
        self
    }
    /// Sets the size in pixels.
    pub fn size(mut self, width: f64, height: f64) -> Self {
        self.width = width;
        self.height = height;
        self
    }

    /// The data range over every finite point and marker, padded so that a flat series
    /// still gets a visible band.
    fn bounds(&self) -> ((f64, f64), (f64, f64)) {
        let pts = self.series.iter().flat_map(|s| s.points.iter()).filter(|(x, y)| x.is_finite() && y.is_finite());
        let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
        for &(x, y) in pts {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        for (x, _) in &self.markers {
            if x.is_finite() {
                x0 = x0.min(*x);
                x1 = x1.max(*x);
            }
        }
        if !x0.is_finite() {
            (x0, x1) = (0.0, 1.0);
        }
        if !y0.is_finite() {
            (y0, y1) = (0.0, 1.0);
        }
        let widen = |lo: f64, hi: f64| if hi - lo > 0.0 { (lo, hi) } else { (lo - 0.5, hi + 0.5) };
        let (x0, x1) = widen(x0, x1);
        let (y0, y1) = widen(y0, y1);
        let pad = (y1 - y0) * 0.05;
        ((x0, x1), (y0 - pad, y1 + pad))
    }

    /// The plot as an SVG document.
    pub fn to_svg(&self) -> String {
        let (w, h) = (self.width, self.height);
        let (left, right, top, bottom) = (70.0, 150.0, 40.0, 50.0);
        let (pw, ph) = (w - left - right, h - top - bottom);
        let ((x0, x1), (y0, y1)) = self.bounds();
        let sx = |x: f64| left + (x - x0) / (x1 - x0) * pw;
        let sy = |y: f64| top + ph - (y - y0) / (y1 - y0) * ph;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
            left + pw / 2.0,
            escape(&self.title)
        );
        // Grid and ticks.
        for t in nice_ticks(y0, y1, 6) {
            let y = sy(t);
            let _ =
                writeln!(s, r##"<line x1="{left}" y1="{y:.2}" x2="{:.2}" y2="{y:.2}" stroke="#e0e0e0"/>"##, left + pw);
            let _ = writeln!(
                s,
                r#"<text x="{:.2}" y="{:.2}" text-anchor="end">{}</text>"#,
                left - 6.0,
                y + 4.0,
                format_tick(t)
            );
        }
        for t in nice_ticks(x0, x1, 8) {
            let x = sx(t);
            let _ =
                writeln!(s, r##"<line x1="{x:.2}" y1="{top}" x2="{x:.2}" y2="{:.2}" stroke="#f0f0f0"/>"##, top + ph);
            let _ = writeln!(
                s,
                r#"<text x="{x:.2}" y="{:.2}" text-anchor="middle">{}</text>"#,
                top + ph + 16.0,
                format_tick(t)
            );
        }
        let _ = writeln!(s, r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##);
        let _ = writeln!(
            s,
            r#"<text x="{:.2}" y="{:.2}" text-anchor="middle">{}</text>"#,
            left + pw / 2.0,
            h - 10.0,
            escape(&self.x_label)
        );
        let _ = writeln!(
            s,
            r#"<text x="16" y="{:.2}" text-anchor="middle" transform="rotate(-90 16 {:.2})">{}</text>"#,
            top + ph / 2.0,
            top + ph / 2.0,
            escape(&self.y_label)
        );
        for (x, label) in &self.markers {
            if !x.is_finite() {
                continue;
            }
            let xs = sx(*x);
            let _ = writeln!(
                s,
                r##"<line x1="{xs:.2}" y1="{top}" x2="{xs:.2}" y2="{:.2}" stroke="#888" stroke-dasharray="2,3"/>"##,
                top + ph
            );
            let _ = writeln!(
                s,
                r##"<text x="{:.2}" y="{:.2}" fill="#666">{}</text>"##,
                xs + 4.0,
                top + 14.0,
                escape(label)
            );
        }
        // Series: one polyline per finite run of points.
        for (i, ser) in self.series.iter().enumerate() {
            let color = ser.color.clone().unwrap_or_else(|| PALETTE[i % PALETTE.len()].to_string());
            let dash = if ser.dashed { r#" stroke-dasharray="6,4""# } else { "" };
            for run in ser.points.split(|(x, y)| !(x.is_finite() && y.is_finite())) {
                if run.is_empty() {
                    continue;
                }
                let pts: Vec<String> = run.iter().map(|&(x, y)| format!("{:.2},{:.2}", sx(x), sy(y))).collect();
                let _ = writeln!(
                    s,
                    r#"<polyline fill="none" stroke="{color}" stroke-width="1.6"{dash} points="{}"/>"#,
                    pts.join(" ")
                );
            }
            let ly = top + 10.0 + 20.0 * i as f64;
            let lx = left + pw + 12.0;
            let _ = writeln!(
                s,
                r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="2"{dash}/>"#,
                lx + 24.0
            );
            let _ = writeln!(s, r#"<text x="{}" y="{}">{}</text>"#, lx + 30.0, ly + 4.0, escape(&ser.name));
        }
        s.push_str("</svg>\n");
        s
    }

    /// Writes the SVG to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_svg()).with_context(|| format!("writing {}", path.display()))
    }
}

/// Escapes text for SVG/XML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// About `n` round tick values (steps of 1, 2 or 5 × 10^k) inside [lo, hi].
pub fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo || n == 0 {
        return Vec::new();
    }
    let raw = (hi - lo) / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    // Multiples of the step, so 0.30000000000000004 prints as 0.3.
    (first..=last).map(|k| k as f64 * step).collect()
}

fn format_tick(v: f64) -> String {
    let r = (v * 1e6).round() / 1e6;
    if r == 0.0 {
        "0".into()
    } else if r.abs() >= 1e5 || r.abs() < 1e-3 {
        format!("{r:.1e}")
    } else {
        let s = format!("{r:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_inside() {
        assert_eq!(nice_ticks(0.0, 10.0, 5), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        let t = nice_ticks(-0.37, 1.21, 6);
        assert!(t.iter().all(|v| (-0.37..=1.21).contains(v)), "{t:?}");
        assert_eq!(t, vec![0.0, 0.5, 1.0]);
        assert_eq!(format_tick(t[0]), "0");
        assert!(nice_ticks(1.0, 1.0, 5).is_empty());
        assert!(nice_ticks(f64::NAN, 1.0, 5).is_empty());
        assert_eq!(format_tick(0.30000000000000004), "0.3");
        assert_eq!(format_tick(12.5), "12.5");
    }

    #[test]
    fn svg_has_every_series_escaped_and_breaks_at_nan() {
        let svg = LinePlot::new("a <b> & c")
            .labels("x", "y")
            .series(Series::new("truth", vec![(0.0, 1.0), (1.0, f64::NAN), (2.0, 3.0), (3.0, 2.0)]))
            .series(Series::new("fc \"1\"", vec![(2.0, 2.5), (3.0, 2.2)]).dashed())
            .marker(2.0, "start")
            .to_svg();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("a &lt;b&gt; &amp; c"));
        assert!(svg.contains("fc &quot;1&quot;"));
        // truth splits into two runs at the NaN, the forecast is one: 3 polylines.
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.contains("stroke-dasharray=\"6,4\""));
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn flat_or_empty_series_still_draw() {
        let svg = LinePlot::new("flat").series(Series::new("c", vec![(0.0, 5.0), (1.0, 5.0)])).to_svg();
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        let svg = LinePlot::new("empty").to_svg();
        assert!(svg.contains("</svg>"));
    }
}

// ---------------------------------------------------------------------------------------
// Free-form drawing (heatmaps, strips, bars) and composition of finished plots.

/// An SVG canvas for free-form drawings (gate heatmaps and the like). Coordinates are user
/// units (pixels), origin top-left; numbers print with fixed precision, so identical input
/// gives identical bytes.
#[derive(Debug, Clone)]
pub struct Canvas {
    /// Width in pixels.
    pub width: f64,
    /// Height in pixels.
    pub height: f64,
    body: String,
}

/// Horizontal text anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// Text starts at the point.
    Start,
    /// Text is centred on the point.
    Middle,
    /// Text ends at the point.
    End,
}

impl Anchor {
    fn name(self) -> &'static str {
        match self {
            Anchor::Start => "start",
            Anchor::Middle => "middle",
            Anchor::End => "end",
        }
    }
}

impl Canvas {
    /// An empty canvas.
    pub fn new(width: f64, height: f64) -> Self {
        Self { width, height, body: String::new() }
    }

    /// A filled rectangle; `title` becomes a hover tooltip.
    pub fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: &str, title: Option<&str>) {
        match title {
            Some(t) => {
                let _ = writeln!(
                    self.body,
                    r#"<rect x="{x:.2}" y="{y:.2}" width="{w:.2}" height="{h:.2}" fill="{fill}"><title>{}</title></rect>"#,
                    escape(t)
                );
            }
            None => {
                let _ = writeln!(
                    self.body,
                    r#"<rect x="{x:.2}" y="{y:.2}" width="{w:.2}" height="{h:.2}" fill="{fill}"/>"#
                );
            }
        }
    }

    /// An unfilled rectangle.
    pub fn frame(&mut self, x: f64, y: f64, w: f64, h: f64, stroke: &str) {
        let _ = writeln!(
            self.body,
            r#"<rect x="{x:.2}" y="{y:.2}" width="{w:.2}" height="{h:.2}" fill="none" stroke="{stroke}"/>"#
        );
    }

    /// A straight line.
    pub fn line(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, stroke: &str) {
        let _ = writeln!(self.body, r#"<line x1="{x1:.2}" y1="{y1:.2}" x2="{x2:.2}" y2="{y2:.2}" stroke="{stroke}"/>"#);
    }

    /// Text at (x, y), the baseline's anchor point.
    pub fn text(&mut self, x: f64, y: f64, size: f64, anchor: Anchor, s: &str) {
        let _ = writeln!(
            self.body,
            r#"<text x="{x:.2}" y="{y:.2}" font-size="{size}" text-anchor="{}">{}</text>"#,
            anchor.name(),
            escape(s)
        );
    }

    /// Text turned 90° counter-clockwise around its anchor (column labels, vertical axes).
    pub fn text_vertical(&mut self, x: f64, y: f64, size: f64, anchor: Anchor, s: &str) {
        let _ = writeln!(
            self.body,
            r#"<text x="{x:.2}" y="{y:.2}" font-size="{size}" text-anchor="{}" transform="rotate(-90 {x:.2} {y:.2})">{}</text>"#,
            anchor.name(),
            escape(s)
        );
    }

    /// A horizontal colour bar for `colormap` over [lo, hi] with end labels.
    #[allow(clippy::too_many_arguments)]
    pub fn colorbar(&mut self, x: f64, y: f64, w: f64, h: f64, lo: f64, hi: f64, colormap: fn(f64) -> [f64; 3]) {
        let n = 50;
        for k in 0..n {
            let t = k as f64 / (n - 1) as f64;
            self.rect(x + w * k as f64 / n as f64, y, w / n as f64 + 0.3, h, &hex(colormap(t)), None);
        }
        self.frame(x, y, w, h, "#444");
        self.text(x, y + h + 11.0, 10.0, Anchor::Start, &format_tick(lo));
        self.text(x + w, y + h + 11.0, 10.0, Anchor::End, &format_tick(hi));
    }

    /// The document; width and height are rounded up to whole pixels.
    pub fn to_svg(&self) -> String {
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n{}</svg>\n",
            self.body,
            w = self.width.ceil() as u64,
            h = self.height.ceil() as u64,
        )
    }
}

/// Finished SVG documents (e.g. [`LinePlot::to_svg`]) placed side by side in one document.
/// Each part is `(svg, width, height)`.
pub fn hstack(parts: &[(String, f64, f64)]) -> String {
    let width: f64 = parts.iter().map(|p| p.1).sum();
    let height = parts.iter().map(|p| p.2).fold(0.0, f64::max);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">\n",
        w = width.ceil() as u64,
        h = height.ceil() as u64
    );
    let mut x = 0.0;
    for (svg, w, _) in parts {
        let _ = writeln!(s, r#"<g transform="translate({x:.2},0)">"#);
        s.push_str(svg);
        s.push_str("</g>\n");
        x += w;
    }
    s.push_str("</svg>\n");
    s
}

/// `#rrggbb` of an RGB triple in [0, 1].
pub fn hex(rgb: [f64; 3]) -> String {
    let c = |v: f64| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    format!("#{:02x}{:02x}{:02x}", c(rgb[0]), c(rgb[1]), c(rgb[2]))
}

/// Viridis (matplotlib's default sequential map) at `t` in [0, 1], linear between 9 of its
/// anchor colours: perceptually uniform, readable in greyscale. Non-finite `t` maps to 0.
pub fn viridis(t: f64) -> [f64; 3] {
    const STOPS: [[f64; 3]; 9] = [
        [0.267, 0.005, 0.329],
        [0.278, 0.175, 0.483],
        [0.230, 0.322, 0.546],
        [0.172, 0.449, 0.558],
        [0.128, 0.567, 0.551],
        [0.157, 0.684, 0.502],
        [0.369, 0.789, 0.383],
        [0.678, 0.864, 0.190],
        [0.993, 0.906, 0.144],
    ];
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 };
    let x = t * (STOPS.len() - 1) as f64;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    [a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1]), a[2] + f * (b[2] - a[2])]
}

/// Blue–white–red map for signed values: `t` in [0, 1] with 0.5 white (map v ∈ [-m, m] by
/// `0.5 + v / (2m)`).
pub fn diverging(t: f64) -> [f64; 3] {
    let t = if t.is_finite() { (2.0 * t - 1.0).clamp(-1.0, 1.0) } else { 0.0 };
    if t >= 0.0 {
        [1.0, 1.0 - 0.8 * t, 1.0 - 0.8 * t]
    } else {
        [1.0 + 0.8 * t, 1.0 + 0.8 * t, 1.0]
    }
}

#[cfg(test)]
mod canvas_tests {
    use super::*;

    #[test]
    fn colour_maps_hit_their_ends() {
        assert_eq!(hex(viridis(0.0)), "#440154");
        assert_eq!(hex(viridis(1.0)), "#fde725");
        assert_eq!(viridis(-3.0), viridis(0.0));
        assert_eq!(viridis(f64::NAN), viridis(0.0));
        assert_eq!(hex(diverging(0.5)), "#ffffff");
        assert_eq!(hex(diverging(1.0)), "#ff3333");
    }

    #[test]
    fn canvas_escapes_and_is_deterministic() {
        let draw = || {
            let mut c = Canvas::new(100.5, 50.0);
            c.rect(1.0, 2.0, 3.0, 4.0, &hex(viridis(0.3)), Some("<o>"));
            c.text(5.0, 6.0, 10.0, Anchor::Middle, "a&b");
            c.text_vertical(5.0, 6.0, 10.0, Anchor::End, "v");
            c.colorbar(0.0, 30.0, 50.0, 5.0, 0.0, 1.0, viridis);
            c.to_svg()
        };
        let a = draw();
        assert_eq!(a, draw());
        assert!(a.contains("width=\"101\"") && a.contains("&lt;o&gt;") && a.contains("a&amp;b"));
        let two = hstack(&[(a.clone(), 101.0, 50.0), (a, 101.0, 50.0)]);
        assert!(two.contains("translate(101.00,0)") && two.matches("<svg").count() == 3);
    }
}

/// Rasterises an SVG document to PNG bytes (2× scale, for sharp figures). Text uses the
/// system's fonts; where none are installed the figure is drawn without its labels.
pub fn svg_to_png(svg: &str) -> anyhow::Result<Vec<u8>> {
    use resvg::{tiny_skia, usvg};
    let mut opt = usvg::Options::default();
    opt.fontdb_mut().load_system_fonts();
    let tree = usvg::Tree::from_str(svg, &opt).map_err(|e| anyhow::anyhow!("parsing the SVG: {e}"))?;
    let scale = 2.0;
    let size = tree.size().to_int_size().scale_by(scale).ok_or_else(|| anyhow::anyhow!("empty figure"))?;
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| anyhow::anyhow!("figure too large: {}x{}", size.width(), size.height()))?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(&tree, tiny_skia::Transform::from_scale(scale, scale), &mut pixmap.as_mut());
    pixmap.encode_png().map_err(|e| anyhow::anyhow!("encoding PNG: {e}"))
}

#[cfg(test)]
mod png_tests {
    #[test]
    fn rasterises_a_small_svg() {
        let svg = r##"<svg xmlns="http://www.w3.org/2000/svg" width="20" height="10"><rect x="0" y="0" width="10" height="10" fill="#ff0000"/></svg>"##;
        let png = super::svg_to_png(svg).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // IHDR: width and height at 2x scale.
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 40);
        assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 20);
        assert!(super::svg_to_png("not svg").is_err());
    }
}
