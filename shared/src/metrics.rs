//! Prometheus text exposition (format 0.0.4), written by hand: a few
//! families of counters and gauges with labels need no client library.
//! Pure: values in, text out.

use std::fmt::Write;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// A page of metric families, each written once with its HELP and TYPE.
#[derive(Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// One family: `name` (counters end in `_total`), its help, and its
    /// samples (labels, value).
    pub fn family(&mut self, name: &str, kind: Kind, help: &str, samples: &[(&[(&str, &str)], f64)]) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(self.text, "# HELP {name} {}", help.replace('\\', "\\\\").replace('\n', "\\n"));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            self.text.push_str(name);
            if !labels.is_empty() {
                self.text.push('{');
                for (i, (k, v)) in labels.iter().enumerate() {
                    if i > 0 {
                        self.text.push(',');
                    }
                    let _ = write!(self.text, "{k}=\"{}\"", escape(v));
                }
                self.text.push('}');
            }
            let _ = writeln!(self.text, " {}", number(*value));
        }
    }

    /// A family with one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: f64) {
        self.family(name, kind, help, &[(&[], value)]);
    }

    pub fn into_text(self) -> String {
        self.text
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_written_in_the_text_format() {
        let mut e = Exposition::new();
        e.single("ossensor_packets_captured_total", Kind::Counter, "Packets received from the capture-workers.", 42.0);
        e.family(
            "ossensor_interface_packets_dropped_total",
            Kind::Counter,
            "Packets dropped before capture.",
            &[(&[("interface", "eth0"), ("where", "kernel")], 3.0), (&[("interface", "we\"ird\\\n"), ("where", "interface")], 0.5)],
        );
        assert_eq!(
            e.into_text(),
            "# HELP ossensor_packets_captured_total Packets received from the capture-workers.\n\
             # TYPE ossensor_packets_captured_total counter\n\
             ossensor_packets_captured_total 42\n\
             # HELP ossensor_interface_packets_dropped_total Packets dropped before capture.\n\
             # TYPE ossensor_interface_packets_dropped_total counter\n\
             ossensor_interface_packets_dropped_total{interface=\"eth0\",where=\"kernel\"} 3\n\
             ossensor_interface_packets_dropped_total{interface=\"we\\\"ird\\\\\\n\",where=\"interface\"} 0.5\n"
        );
    }

    #[test]
    fn special_values() {
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(1e20), "100000000000000000000");
        assert_eq!(number(-2.0), "-2");
    }
}
