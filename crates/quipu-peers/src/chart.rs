//! The chart linked from the README: for every workload, one bar per peer
//! with the ratio Quipu/peer on a log scale (above the line at 1, Quipu
//! does better; for bytes per event too), as an SVG.

use std::path::Path;

use plotters::prelude::*;

use crate::report::Row;

/// Lowest and highest ratio drawn; bars beyond are cut at the edge.
const RATIO_MIN: f64 = 0.01;
const RATIO_MAX: f64 = 100.0;

/// Bar colours, one per peer (Quipu has no bar: it is the line at 1).
const COLOURS: [RGBColor; 6] = [
    RGBColor(0x33, 0x66, 0xcc),
    RGBColor(0xdc, 0x39, 0x12),
    RGBColor(0xff, 0x99, 0x00),
    RGBColor(0x10, 0x96, 0x18),
    RGBColor(0x99, 0x00, 0x99),
    RGBColor(0x00, 0x99, 0xc6),
];

/// The ratio Quipu/peer of `row`, when both were measured.
fn ratio(rows: &[Row], row: &Row) -> Option<f64> {
    let quipu = rows.iter().find(|r| r.peer == "quipu" && r.workload == row.workload)?.value?;
    let value = row.value.filter(|v| *v > 0.0)?;
    let ratio = if row.higher_is_better { quipu / value } else { value / quipu };
    Some(ratio.clamp(RATIO_MIN, RATIO_MAX))
}

/// Draws the chart into `path`.
///
/// # Errors
/// Drawing or writing the file.
pub fn draw(rows: &[Row], peers: &[String], path: &Path) -> anyhow::Result<()> {
    let others: Vec<&String> = peers.iter().filter(|p| p.as_str() != "quipu").collect();
    let mut workloads: Vec<&str> = Vec::new();
    for row in rows.iter().filter(|r| r.peer == "quipu") {
        if !workloads.contains(&row.workload.as_str()) {
            workloads.push(&row.workload);
        }
    }
    let root = SVGBackend::new(path, (1100, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Quipu / peer on the same workload (above 1: Quipu does better)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..workloads.len() as f64, (RATIO_MIN..RATIO_MAX).log_scale())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(workloads.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let index = (x - 0.5).round();
            let near_center = (x - 0.5 - index).abs() < 0.01 && index >= 0.0;
            workloads.get(index as usize).filter(|_| near_center).map_or_else(String::new, |w| (*w).to_string())
        })
        .y_desc("Quipu / peer")
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .draw_series(std::iter::once(PathElement::new(vec![(0.0, 1.0), (workloads.len() as f64, 1.0)], BLACK)))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let width = 0.8 / others.len().max(1) as f64;
    for ((p, peer), colour) in others.iter().enumerate().zip(COLOURS.iter().cycle()) {
        let colour = *colour;
        let bars = workloads.iter().enumerate().filter_map(|(w, workload)| {
            let row = rows.iter().find(|r| &r.peer == *peer && r.workload == *workload)?;
            let ratio = ratio(rows, row)?;
            let x = w as f64 + 0.1 + p as f64 * width;
            Some(Rectangle::new([(x, RATIO_MIN), (x + width * 0.9, ratio)], colour.filled()))
        });
        chart
            .draw_series(bars)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(peer.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(peer: &str, workload: &str, value: f64, higher_is_better: bool) -> Row {
        Row {
            peer: peer.into(),
            workload: workload.into(),
            value: Some(value),
            unit: "events/s",
            higher_is_better,
            latency_us: None,
            note: None,
        }
    }

    #[test]
    fn ratios_put_quipu_above_one_when_it_does_better() {
        let rows = [
            row("quipu", "append x1", 200.0, true),
            row("redis", "append x1", 100.0, true),
            row("quipu", "disk", 50.0, false),
            row("redis", "disk", 150.0, false),
        ];
        assert_eq!(ratio(&rows, &rows[1]), Some(2.0));
        assert_eq!(ratio(&rows, &rows[3]), Some(3.0));
    }

    #[test]
    fn the_chart_names_every_peer_and_workload() {
        let rows = [
            row("quipu", "append x1", 200.0, true),
            row("postgres", "append x1", 100.0, true),
            row("redis", "append x1", 400.0, true),
        ];
        let dir = std::env::temp_dir().join(format!("quipu-peers-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let path = dir.join("chart.svg");
        draw(&rows, &["quipu".into(), "postgres".into(), "redis".into()], &path).expect("drawn");
        let svg = std::fs::read_to_string(&path).expect("the SVG");
        for text in ["postgres", "redis", "append x1", "Quipu / peer"] {
            assert!(svg.contains(text), "{text} is missing");
        }
        std::fs::remove_dir_all(&dir).expect("cleaned up");
    }
}
