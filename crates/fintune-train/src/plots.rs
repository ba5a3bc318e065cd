//! PNG plots of a run (plotters, bitmap backend, a system TrueType font for labels).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::FontStyle;

/// Fonts tried for labels, in order (after `$FINTUNE_FONT`).
const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",
    "/Library/Fonts/Arial.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
];

type PlotResult<T = ()> = Result<T, String>;

/// Registers a font for "sans-serif" once; an error explains how to get one.
fn ensure_font() -> PlotResult {
    static FONT: OnceLock<Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let candidates: Vec<PathBuf> = std::env::var_os("FINTUNE_FONT")
            .map(PathBuf::from)
            .into_iter()
            .chain(FONT_PATHS.iter().map(PathBuf::from))
            .collect();
        for p in &candidates {
            if let Ok(bytes) = std::fs::read(p) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return Ok(());
                }
            }
        }
        Err("no TrueType font found for plot labels: install one (Debian: apt-get install fonts-dejavu-core) or set FINTUNE_FONT=/path/to/font.ttf".into())
    })
    .clone()
}

fn err<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> String + '_ {
    move |e| format!("{}: {e}", path.display())
}

const SIZE: (u32, u32) = (900, 560);

/// Named series of (x, y) points on one line chart.
pub fn lines(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(&str, Vec<(f64, f64)>)],
) -> PlotResult {
    ensure_font()?;
    let e = err(path);
    let pts = series.iter().flat_map(|(_, s)| s.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts.filter(|(x, y)| x.is_finite() && y.is_finite()) {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return Err(format!("{}: nothing to plot", path.display()));
    }
    let pad = ((y1 - y0) * 0.05).max(1e-6);
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(&e)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1.max(x0 + 1.0), (y0 - pad)..(y1 + pad))
        .map_err(&e)?;
    chart.configure_mesh().x_desc(x_label).y_desc(y_label).draw().map_err(&e)?;
    for (i, (name, s)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                s.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()),
                color.stroke_width(2),
            ))
            .map_err(&e)?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(&e)?;
    root.present().map_err(&e)?;
    Ok(())
}

/// Histogram of `scores` over [lo, hi] with vertical lines at `thresholds`.
pub fn histogram(
    path: &Path,
    title: &str,
    scores: &[f32],
    range: (f32, f32),
    bins: usize,
    thresholds: &[f32],
) -> PlotResult {
    ensure_font()?;
    let e = err(path);
    let (lo, hi) = (f64::from(range.0), f64::from(range.1));
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![0usize; bins];
    for &s in scores {
        let b = (((f64::from(s) - lo) / width) as usize).min(bins - 1);
        counts[b] += 1;
    }
    let top = *counts.iter().max().unwrap_or(&1) as f64 * 1.1 + 1.0;
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(&e)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(lo..hi, 0.0..top)
        .map_err(&e)?;
    chart.configure_mesh().x_desc("score").y_desc("count").draw().map_err(&e)?;
    chart
        .draw_series(counts.iter().enumerate().map(|(i, &c)| {
            let x = lo + i as f64 * width;
            Rectangle::new([(x, 0.0), (x + width * 0.95, c as f64)], BLUE.mix(0.6).filled())
        }))
        .map_err(&e)?;
    for &t in thresholds {
        chart
            .draw_series(LineSeries::new(
                [(f64::from(t), 0.0), (f64::from(t), top)],
                RED.stroke_width(2),
            ))
            .map_err(&e)?;
    }
    root.present().map_err(&e)?;
    Ok(())
}

/// Predicted against gold scores, with the diagonal.
pub fn scatter(path: &Path, title: &str, gold: &[f32], pred: &[f32]) -> PlotResult {
    ensure_font()?;
    let e = err(path);
    let root = BitMapBackend::new(path, (640, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(&e)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(-1.05f64..1.05, -1.05f64..1.05)
        .map_err(&e)?;
    chart.configure_mesh().x_desc("gold score").y_desc("predicted score").draw().map_err(&e)?;
    chart.draw_series(LineSeries::new([(-1.0, -1.0), (1.0, 1.0)], BLACK.mix(0.5))).map_err(&e)?;
    chart
        .draw_series(
            gold.iter().zip(pred).map(|(&g, &p)| {
                Circle::new((f64::from(g), f64::from(p)), 3, BLUE.mix(0.5).filled())
            }),
        )
        .map_err(&e)?;
    root.present().map_err(&e)?;
    Ok(())
}

/// One bar per label (missing values are left out).
pub fn bars(
    path: &Path,
    title: &str,
    y_label: &str,
    labels: &[String],
    values: &[Option<f64>],
) -> PlotResult {
    ensure_font()?;
    let e = err(path);
    let top = values.iter().flatten().fold(0.0f64, |a, &b| a.max(b)) * 1.15 + 1e-6;
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(&e)?;
    let n = labels.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((0..n).into_segmented(), 0f64..top)
        .map_err(&e)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                labels.get(*i).cloned().unwrap_or_default()
            }
            SegmentValue::Last => String::new(),
        })
        .y_desc(y_label)
        .draw()
        .map_err(&e)?;
    chart
        .draw_series(
            Histogram::vertical(&chart)
                .style(BLUE.mix(0.6).filled())
                .margin(30)
                .data(values.iter().enumerate().filter_map(|(i, v)| v.map(|v| (i, v)))),
        )
        .map_err(&e)?;
    root.present().map_err(&e)?;
    Ok(())
}

/// Mean ± std per label, one panel per series (labels on the vertical axis).
pub fn error_bars(
    path: &Path,
    title: &str,
    labels: &[String],
    series: &[(&str, Vec<(f64, f64)>)],
) -> PlotResult {
    ensure_font()?;
    let e = err(path);
    let n = labels.len();
    let height = (120 + 28 * n as u32).max(300);
    let root = BitMapBackend::new(path, (1100, height)).into_drawing_area();
    root.fill(&WHITE).map_err(&e)?;
    let root = root.titled(title, ("sans-serif", 22)).map_err(&e)?;
    let panels = root.split_evenly((1, series.len().max(1)));
    for (k, ((name, vals), area)) in series.iter().zip(panels.iter()).enumerate() {
        let finite: Vec<(f64, f64)> = vals.iter().copied().filter(|(m, _)| m.is_finite()).collect();
        let lo = finite.iter().map(|(m, s)| m - s).fold(f64::MAX, f64::min).min(f64::MAX);
        let hi = finite.iter().map(|(m, s)| m + s).fold(f64::MIN, f64::max);
        if finite.is_empty() {
            continue;
        }
        let pad = ((hi - lo) * 0.08).max(1e-4);
        let mut chart = ChartBuilder::on(area)
            .caption(*name, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(if k == 0 { 170 } else { 10 })
            .build_cartesian_2d((lo - pad).max(0.0)..(hi + pad), (0..n).into_segmented())
            .map_err(&e)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) if k == 0 => {
                    labels.get(*i).cloned().unwrap_or_default()
                }
                _ => String::new(),
            })
            .x_desc("MSE")
            .draw()
            .map_err(&e)?;
        let color = Palette99::pick(k).to_rgba();
        chart
            .draw_series(vals.iter().enumerate().filter(|(_, (m, _))| m.is_finite()).map(
                |(i, &(m, s))| {
                    ErrorBar::new_horizontal(
                        SegmentValue::CenterOf(i),
                        m - s,
                        m,
                        m + s,
                        color.filled().stroke_width(2),
                        8,
                    )
                },
            ))
            .map_err(&e)?;
    }
    root.present().map_err(&e)?;
    Ok(())
}
