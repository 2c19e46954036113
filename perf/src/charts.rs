//! PNG line charts for the report, drawn with plotters' bitmap backend and an embedded font
//! (no system font libraries needed).

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

/// DejaVu Sans (Bitstream Vera licence, perf/assets/DejaVuSans-LICENSE.txt).
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

fn register_font() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        if plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_err() {
            eprintln!("warning: the embedded font did not load; charts will have no text");
        }
    });
}

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn text(error: impl std::fmt::Display) -> String {
    error.to_string()
}

/// One line: a name and its (x, y) points.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

pub struct LineChart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub series: Vec<Series>,
    /// A dashed horizontal line, e.g. the p99 limit.
    pub threshold: Option<(f64, &'a str)>,
    pub log_y: bool,
}

impl LineChart<'_> {
    pub fn draw(&self, path: &Path) -> anyhow::Result<()> {
        self.draw_inner(path).map_err(|error| anyhow::anyhow!("drawing {}: {error}", path.display()))
    }

    fn draw_inner(&self, path: &Path) -> Result<(), String> {
        register_font();
        let points = || self.series.iter().flat_map(|series| series.points.iter()).filter(|(_, y)| y.is_finite());
        let x_max = points().map(|(x, _)| *x).fold(1.0, f64::max) * 1.05;
        let mut y_max = points().map(|(_, y)| *y).fold(1.0, f64::max);
        if let Some((threshold, _)) = self.threshold {
            y_max = y_max.max(threshold);
        }
        let y_min = points().map(|(_, y)| *y).filter(|y| *y > 0.0).fold(y_max, f64::min);
        let root = BitMapBackend::new(path, (960, 540)).into_drawing_area();
        root.fill(&WHITE).map_err(text)?;
        let mut builder = ChartBuilder::on(&root);
        builder.caption(self.title, ("sans-serif", 24)).margin(16).x_label_area_size(48).y_label_area_size(72);
        if self.log_y {
            let mut chart = builder
                .build_cartesian_2d(0f64..x_max, ((y_min / 2.0).max(0.01)..y_max * 2.0).log_scale())
                .map_err(text)?;
            chart.configure_mesh().x_desc(self.x_label).y_desc(self.y_label).draw().map_err(text)?;
            self.lines(&mut chart, x_max).map_err(text)?;
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(text)?;
        } else {
            let mut chart = builder.build_cartesian_2d(0f64..x_max, 0f64..y_max * 1.1).map_err(text)?;
            chart.configure_mesh().x_desc(self.x_label).y_desc(self.y_label).draw().map_err(text)?;
            self.lines(&mut chart, x_max).map_err(text)?;
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(text)?;
        }
        root.present().map_err(text)?;
        Ok(())
    }

    fn lines<'b, Y>(
        &self,
        chart: &mut ChartContext<'b, BitMapBackend<'b>, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
        x_max: f64,
    ) -> Result<(), String>
    where
        Y: Ranged<ValueType = f64>,
    {
        for (index, series) in self.series.iter().enumerate() {
            let color = COLORS[index % COLORS.len()];
            let points: Vec<(f64, f64)> =
                series.points.iter().copied().filter(|(_, y)| y.is_finite() && *y > 0.0).collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(text)?
                .label(series.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            chart.draw_series(points.iter().map(|point| Circle::new(*point, 4, color.filled()))).map_err(text)?;
        }
        if let Some((threshold, name)) = self.threshold {
            let dashes: Vec<(f64, f64)> = (0..40)
                .flat_map(|i| {
                    let from = x_max * f64::from(i) / 40.0;
                    [(from, threshold), (from + x_max / 80.0, threshold)]
                })
                .collect();
            chart
                .draw_series(dashes.chunks(2).map(|pair| PathElement::new(pair.to_vec(), BLACK)))
                .map_err(text)?
                .label(name.to_owned())
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_png_with_the_embedded_font() {
        let path = std::env::temp_dir().join(format!("minipay-chart-{}.png", std::process::id()));
        for log_y in [false, true] {
            let chart = LineChart {
                title: "p99 latency",
                x_label: "virtual users",
                y_label: "ms",
                series: vec![
                    Series { name: "a".into(), points: vec![(10.0, 5.0), (25.0, 40.0), (50.0, 180.0)] },
                    Series { name: "b".into(), points: vec![(10.0, 1.0), (25.0, f64::NAN)] },
                ],
                threshold: Some((100.0, "limit")),
                log_y,
            };
            chart.draw(&path).unwrap();
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(&bytes[1..4], b"PNG");
        }
        let _ = std::fs::remove_file(&path);
    }
}
