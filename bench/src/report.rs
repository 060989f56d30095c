//! The results table: one section per scenario, one row per figure, printed as
//! Markdown so it pastes straight into `docs/BENCHMARKS.md`.

use std::fmt::Write;

/// One measured figure.
#[derive(Debug, Clone)]
pub struct Figure {
    pub case: String,
    pub metric: String,
    pub value: String,
    /// The goal, when the issue sets one, e.g. `≥ 150,000`.
    pub goal: String,
    /// Whether the goal is met (`None`: no goal).
    pub met: Option<bool>,
}

/// A scenario's figures.
#[derive(Debug, Default)]
pub struct Section {
    pub title: String,
    pub figures: Vec<Figure>,
    pub notes: Vec<String>,
}

impl Section {
    pub fn new(title: &str) -> Self {
        Self {
            title: title.into(),
            ..Self::default()
        }
    }

    /// Adds a figure without a goal.
    pub fn add(&mut self, case: &str, metric: &str, value: String) {
        self.figures.push(Figure {
            case: case.into(),
            metric: metric.into(),
            value,
            goal: String::new(),
            met: None,
        });
    }

    /// Adds a figure with its goal and whether it is met.
    pub fn add_goal(&mut self, case: &str, metric: &str, value: String, goal: &str, met: bool) {
        self.figures.push(Figure {
            case: case.into(),
            metric: metric.into(),
            value,
            goal: goal.into(),
            met: Some(met),
        });
    }

    pub fn note(&mut self, note: String) {
        self.notes.push(note);
    }

    /// The section as Markdown.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "### {}\n\n| case | figure | value | goal |\n|---|---|---:|---|\n",
            self.title
        );
        for f in &self.figures {
            let goal = match f.met {
                None => String::new(),
                Some(true) => format!("{} ✅", f.goal),
                Some(false) => format!("{} ❌", f.goal),
            };
            let _ = writeln!(out, "| {} | {} | {} | {} |", f.case, f.metric, f.value, goal);
        }
        for n in &self.notes {
            let _ = writeln!(out, "\n{n}");
        }
        out
    }
}

/// `1234567.8` → `1,234,568`.
pub fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes as MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// A duration in milliseconds with one decimal.
pub fn ms(d: std::time::Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
