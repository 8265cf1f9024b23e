//! The flood table as a chart (PNG, plotters): each defence's capacity,
//! the Mpps its receiving core can dispose of (median bar, min-max line),
//! beside plain XDP_DROP's. Written where `TG_BENCH_CHART` says (`cargo
//! xtask bench` sets it for a whole run, beside BENCHMARKS.md).

use std::path::Path;

use anyhow::Context as _;
use plotters::{prelude::*, style::FontStyle};

/// The font the labels are drawn in (Debian's fonts-dejavu-core, which
/// `cargo xtask setup` installs).
pub const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// One bar: a defence and its capacity, Mpps (min, median, max).
pub struct Bar {
    pub name: &'static str,
    pub mpps: (f64, f64, f64),
}

pub fn flood(path: &Path, bars: &[Bar], title: &str) -> anyhow::Result<()> {
    let font = std::fs::read(FONT).with_context(|| {
        format!("reading {FONT} (`cargo xtask setup` installs fonts-dejavu-core)")
    })?;
    // plotters keeps registered fonts for the process.
    plotters::style::register_font(
        "sans-serif",
        FontStyle::Normal,
        Box::leak(font.into_boxed_slice()),
    )
    .map_err(|_| anyhow::anyhow!("{FONT} is not a font plotters can read"))?;
    let root = BitMapBackend::new(path, (1100, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = bars.iter().map(|b| b.mpps.2).fold(1.0, f64::max) * 1.1;
    let n = bars.len();
    // The first defence at the top: bar i sits at height n - 1 - i.
    let row = |i: usize| (n - 1 - i) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(36)
        .y_label_area_size(300)
        .build_cartesian_2d(0.0..top, -0.5..(n as f64 - 0.5))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .x_desc("Mpps the receiving core disposes of (median; line: min to max)")
        .y_label_formatter(&|y| {
            let r = y.round();
            if (y - r).abs() > 0.01 || r < 0.0 || r as usize >= n {
                return String::new();
            }
            bars[n - 1 - r as usize].name.to_owned()
        })
        .label_style(("sans-serif", 15))
        .draw()?;
    let color = |name: &str| {
        if name.starts_with("Tollgate") {
            RGBColor(31, 119, 180)
        } else if name == "plain XDP_DROP" {
            RGBColor(44, 160, 44)
        } else {
            RGBColor(150, 150, 150)
        }
    };
    chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
        Rectangle::new(
            [(0.0, row(i) - 0.35), (b.mpps.1, row(i) + 0.35)],
            color(b.name).filled(),
        )
    }))?;
    chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
        PathElement::new(
            vec![(b.mpps.0, row(i)), (b.mpps.2, row(i))],
            BLACK.stroke_width(2),
        )
    }))?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_is_a_png_with_every_defence() {
        let path = std::env::temp_dir().join(format!("tg-chart-{}.png", std::process::id()));
        let bars = [
            Bar {
                name: "plain XDP_DROP",
                mpps: (9.0, 10.0, 11.0),
            },
            Bar {
                name: "Tollgate, source banned",
                mpps: (5.0, 5.5, 6.0),
            },
            Bar {
                name: "iptables hashlimit",
                mpps: (1.4, 1.5, 1.6),
            },
        ];
        flood(&path, &bars, "test").unwrap();
        let png = std::fs::read(&path).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert!(
            png.len() > 5_000,
            "a drawn chart, not an empty one: {} bytes",
            png.len()
        );
        if let Some(keep) = std::env::var_os("TG_CHART_KEEP") {
            std::fs::copy(&path, keep).unwrap();
        }
        std::fs::remove_file(&path).unwrap();
    }
}
