//! Charts (SVG and PNG) drawn with plotters from measured series.

use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// The font all charts use, read at run time.
pub const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Register the charts' font with plotters (once).
pub fn register_font() -> crate::Result<()> {
    // Kept as text: the first outcome is every later caller's.
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let bytes = std::fs::read(FONT_PATH).map_err(|e| {
            format!("{FONT_PATH}: {e} (install fonts-dejavu-core: scripts/setup.sh)")
        })?;
        let leaked: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, leaked)
            .map_err(|_| format!("{FONT_PATH}: not a usable font"))
    })
    .clone()
    .map_err(|e| crate::Error::tool("fonts-dejavu-core", e))
}

/// A named line: (x, y) points.
pub type Series = (String, Vec<(f64, f64)>);

fn perr<E: std::fmt::Debug>(e: E) -> crate::Error {
    crate::fail!("chart: {e:?}")
}

/// Horizontal bars, stacked: `stacks` = (legend, value per label).
fn hbars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    xdesc: &str,
    labels: &[String],
    stacks: &[(String, Vec<f64>)],
) -> crate::Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(perr)?;
    let nl = labels.len().max(1);
    let max = (0..labels.len())
        .map(|i| {
            stacks
                .iter()
                .map(|(_, v)| v.get(i).copied().unwrap_or(0.0))
                .sum::<f64>()
        })
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.1;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(190)
        // A segmented 0..k has k + 1 segments: one per label.
        .build_cartesian_2d(0f64..max, (0..nl.max(2) - 1).into_segmented())
        .map_err(perr)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc(xdesc)
        .y_labels(nl)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(perr)?;
    let mut base = vec![0.0; labels.len()];
    for (k, (legend, vals)) in stacks.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        let rects: Vec<_> = vals
            .iter()
            .enumerate()
            .take(labels.len())
            .map(|(i, v)| {
                let mut r = Rectangle::new(
                    [
                        (base[i], SegmentValue::Exact(i)),
                        (base[i] + v, SegmentValue::Exact(i + 1)),
                    ],
                    color.filled(),
                );
                r.set_margin(4, 4, 0, 0);
                base[i] += v;
                r
            })
            .collect();
        if stacks.len() > 1 {
            chart
                .draw_series(rects)
                .map_err(perr)?
                .label(legend.clone())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
        } else {
            chart.draw_series(rects).map_err(perr)?;
        }
    }
    if stacks.len() > 1 {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(perr)?;
    }
    root.present().map_err(perr)?;
    Ok(())
}

/// Log-log lines with points, one series per protocol.
fn loglog<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    xdesc: &str,
    ydesc: &str,
    series: &[Series],
) -> crate::Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(perr)?;
    let pts = series
        .iter()
        .flat_map(|(_, v)| v.iter())
        .filter(|(x, y)| *x > 0.0 && *y > 0.0);
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in pts {
        x0 = x0.min(*x);
        x1 = x1.max(*x);
        y0 = y0.min(*y);
        y1 = y1.max(*y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (1.0, 10.0, 1.0, 10.0);
    }
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (x0 / 1.5..x1 * 1.5).log_scale(),
            (y0 / 1.5..y1 * 1.5).log_scale(),
        )
        .map_err(perr)?;
    chart
        .configure_mesh()
        .x_desc(xdesc)
        .y_desc(ydesc)
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(perr)?;
    for (k, (name, v)) in series.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        let v: Vec<(f64, f64)> = v
            .iter()
            .copied()
            .filter(|(x, y)| *x > 0.0 && *y > 0.0)
            .collect();
        chart
            .draw_series(LineSeries::new(v.clone(), color.stroke_width(2)))
            .map_err(perr)?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
        chart
            .draw_series(v.iter().map(|p| Circle::new(*p, 3, color.filled())))
            .map_err(perr)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 12))
        .draw()
        .map_err(perr)?;
    root.present().map_err(perr)?;
    Ok(())
}

/// A chart to draw.
pub enum Chart<'a> {
    /// Horizontal stacked bars: title, x axis, labels, (legend, values).
    Bars(&'a str, &'a str, Vec<String>, Vec<(String, Vec<f64>)>),
    /// Log-log lines: title, x axis, y axis, series.
    Lines(&'a str, &'a str, &'a str, Vec<Series>),
}

fn draw_on<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, c: &Chart) -> crate::Result<()>
where
    DB::ErrorType: 'static,
{
    match c {
        Chart::Bars(t, x, l, s) => hbars(&root, t, x, l, s),
        Chart::Lines(t, x, y, s) => loglog(&root, t, x, y, s),
    }
}

/// Write `name.svg` and `name.png`.
pub fn render(dir: &Path, name: &str, c: &Chart, files: &mut Vec<PathBuf>) -> crate::Result<()> {
    let rows = match c {
        Chart::Bars(_, _, l, _) => l.len(),
        _ => 12,
    };
    let size = (1000u32, (140 + 34 * rows as u32).max(420));
    let svg = dir.join(format!("{name}.svg"));
    draw_on(SVGBackend::new(&svg, size).into_drawing_area(), c)?;
    let png = dir.join(format!("{name}.png"));
    draw_on(BitMapBackend::new(&png, size).into_drawing_area(), c)?;
    files.push(svg);
    files.push(png);
    Ok(())
}
