//! Horizontal bar charts as data for the templates to draw as inline SVG (`templates/
//! chart.html`): this computes the geometry, the template writes the elements, and MiniJinja's
//! HTML escaping covers every label (which may come from a SCIM client). No JavaScript, no
//! library: a handful of rectangles and texts print as crisply as the tables beside them.

use serde::Serialize;

/// Width of the label column, the bar area and the value text, in SVG user units (px).
const LABEL_W: f64 = 190.0;
const BAR_W: f64 = 380.0;
const VALUE_W: f64 = 110.0;
const ROW_H: f64 = 24.0;
const TOP: f64 = 8.0;
/// Labels longer than this are cut (with an ellipsis) so they stay inside their column.
const MAX_LABEL: usize = 28;

/// One chart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chart {
    pub title: String,
    pub width: f64,
    pub height: f64,
    /// Where labels end (right-aligned) and bars start.
    pub label_x: f64,
    pub bar_x: f64,
    pub bars: Vec<Bar>,
    /// Vertical guide lines (e.g. 50 % and 100 % of an attainment scale), with their captions.
    pub guides: Vec<Guide>,
}

/// One bar.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bar {
    pub label: String,
    /// The value as printed beside the bar.
    pub text: String,
    pub y: f64,
    pub w: f64,
    /// Colour class: `neutral`, `good`, `bad`, `warn`.
    pub tone: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Guide {
    pub x: f64,
    pub caption: String,
}

/// A value to chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Datum {
    pub label: String,
    pub value: f64,
    pub text: String,
    pub tone: &'static str,
}

impl Datum {
    pub fn new(label: impl Into<String>, value: f64, text: impl Into<String>) -> Datum {
        Datum {
            label: label.into(),
            value,
            text: text.into(),
            tone: "neutral",
        }
    }

    pub fn tone(mut self, tone: &'static str) -> Datum {
        self.tone = tone;
        self
    }
}

fn cut(label: &str) -> String {
    if label.chars().count() <= MAX_LABEL {
        label.to_string()
    } else {
        let mut s: String = label.chars().take(MAX_LABEL - 1).collect();
        s.push('…');
        s
    }
}

/// Bars scaled to `max` (the largest value when `None`; a chart of zeros draws no bar).
pub fn bars(title: impl Into<String>, data: &[Datum], max: Option<f64>) -> Chart {
    let top = max
        .unwrap_or_else(|| data.iter().map(|d| d.value).fold(0.0, f64::max))
        .max(0.0);
    let scale = |v: f64| {
        if top > 0.0 && v.is_finite() {
            ((v.max(0.0) / top) * BAR_W).min(BAR_W)
        } else {
            0.0
        }
    };
    let bars = data
        .iter()
        .enumerate()
        .map(|(i, d)| Bar {
            label: cut(&d.label),
            text: d.text.clone(),
            y: TOP + i as f64 * ROW_H,
            w: (scale(d.value) * 10.0).round() / 10.0,
            tone: d.tone,
        })
        .collect::<Vec<_>>();
    Chart {
        title: title.into(),
        width: LABEL_W + BAR_W + VALUE_W,
        height: TOP * 2.0 + (bars.len().max(1) as f64) * ROW_H,
        label_x: LABEL_W - 8.0,
        bar_x: LABEL_W,
        bars,
        guides: Vec::new(),
    }
}

/// Bars on a 0–100 % scale with guides at 50 % and 100 %.
pub fn percent(title: impl Into<String>, data: &[Datum]) -> Chart {
    let mut c = bars(title, data, Some(100.0));
    c.guides = vec![
        Guide {
            x: LABEL_W + BAR_W / 2.0,
            caption: "50 %".into(),
        },
        Guide {
            x: LABEL_W + BAR_W,
            caption: "100 %".into(),
        },
    ];
    c
}

/// Seconds as a short duration: `45 s`, `12 min`, `2 h 05 min`, `3 d 4 h`.
pub fn duration(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        3600..=86_399 => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_value_and_cut_long_labels() {
        let c = bars(
            "t",
            &[
                Datum::new("leaver", 10.0, "10"),
                Datum::new("a-very-long-label-of-a-client-that-goes-on", 5.0, "5"),
                Datum::new("zero", 0.0, "0"),
            ],
            None,
        );
        assert_eq!(c.bars[0].w, BAR_W);
        assert_eq!(c.bars[1].w, BAR_W / 2.0);
        assert_eq!(c.bars[2].w, 0.0);
        assert_eq!(c.bars[1].label.chars().count(), MAX_LABEL);
        assert!(c.bars[1].label.ends_with('…'));
        assert_eq!(c.bars[1].y - c.bars[0].y, ROW_H);
        assert_eq!(c.height, TOP * 2.0 + 3.0 * ROW_H);
    }

    #[test]
    fn percent_caps_at_the_scale_and_zeros_draw_nothing() {
        let c = percent("t", &[Datum::new("a", 150.0, "150 %")]);
        assert_eq!(c.bars[0].w, BAR_W);
        assert_eq!(c.guides.len(), 2);
        let z = bars("t", &[Datum::new("a", 0.0, "0")], None);
        assert_eq!(z.bars[0].w, 0.0);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(45), "45 s");
        assert_eq!(duration(720), "12 min");
        assert_eq!(duration(7500), "2 h 05 min");
        assert_eq!(duration(3 * 86_400 + 4 * 3600), "3 d 4 h");
    }
}
