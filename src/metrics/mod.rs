//! Cairn's Prometheus metrics: a small registry of counters, gauges and histograms, rendered in
//! the Prometheus text exposition format 0.0.4 for `/metrics`.
//!
//! Recording through a series handle is lock-free (a handle is an `Arc` of atomics; clone it into
//! the code that records). Looking a labelled series up with [`Family::with`] takes a shared read
//! lock (about 80 ns with its key allocation), and the write lock only the first time a label set
//! appears; keep handles on hot paths. Registration and rendering take the registry's lock.
//!
//! # Output
//! ```text
//! # HELP <name> <help, with \ and newline escaped>
//! # TYPE <name> counter|gauge|histogram
//! <name>{<label>="<value, with \ " newline escaped>",...} <value>
//! ```
//! Families appear sorted by name, series by label values, labels in declaration order, so two
//! scrapes of the same state are byte-identical. A histogram series renders cumulative
//! `<name>_bucket{...,le="<bound>"}` lines ending with `le="+Inf"`, then `<name>_sum` and
//! `<name>_count`. Integer series print as integers; floats print as Go's `%g` does, as the
//! Prometheus Go client does, so bucket labels read `le="0.001"` exactly as etcd's. A labelled
//! family with no series yet is left out entirely (no HELP/TYPE), as in the Go client.
//!
//! A series can be exported under a second name ([`Registry::alias`]) so dashboards built for
//! etcd (`etcd_server_has_leader`, `etcd_disk_wal_fsync_duration_seconds`, …) read Cairn too.
//! [`ServerMetrics`] declares every family the server records, in one place.

mod family;
mod grpc;
mod series;
mod server;
mod text;

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;

pub use family::{Family, MAX_SERIES_PER_FAMILY};
pub use grpc::{grpc_code_name, GrpcMethod, ALL_GRPC_CODES};
pub use series::{Buckets, Counter, Gauge, GaugeF64, Histogram, Series, MAX_HISTOGRAM_BUCKETS};
pub use server::{GrpcMethodSeries, ServerMetrics};

/// The `Content-Type` of a text exposition, as the Prometheus Go client sends it.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// At most this many families (aliases included) in one registry; the server registers about
/// thirty.
pub const MAX_FAMILIES: usize = 1024;

/// Metric and label names longer than this many bytes are refused at registration.
pub const MAX_NAME_BYTES: usize = 256;

/// The `# TYPE` of a family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Why a metric could not be registered. All are programming errors in the declaring code,
/// reported at startup rather than as a malformed scrape later.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MetricsError {
    #[error("metric name {name:?} is not [a-zA-Z_:][a-zA-Z0-9_:]* of at most {max_bytes} bytes")]
    InvalidName { name: String, max_bytes: usize },
    #[error("label name {label:?} of metric {name:?} is not [a-zA-Z_][a-zA-Z0-9_]* (and not __* or, for histograms, le)")]
    InvalidLabel { name: String, label: String },
    #[error("label name {label:?} appears twice in metric {name:?}")]
    DuplicateLabel { name: String, label: String },
    #[error("metric {name:?} is already registered")]
    AlreadyRegistered { name: String },
    #[error("registry is full: at most {max} families")]
    TooManyFamilies { max: usize },
    #[error("a histogram needs between 1 and {max} bucket bounds, got {count}")]
    BucketCount { count: usize, max: usize },
    #[error("histogram bucket bound {index} is {reason}")]
    BucketBound { index: usize, reason: &'static str },
}

/// Something the registry can render: a single series or a family.
trait Collect: Send + Sync {
    fn kind(&self) -> Kind;
    /// True when there is nothing to export (a labelled family before its first use).
    fn is_empty(&self) -> bool;
    /// Appends the sample lines (not HELP/TYPE) under `name`.
    fn render_samples(&self, name: &str, out: &mut String);
}

/// One unlabelled series registered as a family of its own.
struct Single<M>(M);

impl<M: Series> Collect for Single<M> {
    fn kind(&self) -> Kind {
        M::KIND
    }

    fn is_empty(&self) -> bool {
        false
    }

    fn render_samples(&self, name: &str, out: &mut String) {
        self.0.render(name, "", out);
    }
}

struct Entry {
    help: String,
    source: Arc<dyn Collect>,
}

/// All of a process' metric families, by name. Create one, share it (`Arc<Registry>`), render it
/// for each scrape.
#[derive(Default)]
pub struct Registry {
    families: RwLock<BTreeMap<String, Entry>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// An unlabelled counter.
    pub fn counter(&self, name: &str, help: &str) -> Result<Counter, MetricsError> {
        self.series(name, help, &())
    }

    /// An unlabelled integer gauge.
    pub fn gauge(&self, name: &str, help: &str) -> Result<Gauge, MetricsError> {
        self.series(name, help, &())
    }

    /// An unlabelled fractional gauge.
    pub fn gauge_f64(&self, name: &str, help: &str) -> Result<GaugeF64, MetricsError> {
        self.series(name, help, &())
    }

    /// An unlabelled histogram with these buckets.
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        buckets: &Buckets,
    ) -> Result<Histogram, MetricsError> {
        self.series(name, help, buckets)
    }

    /// An unlabelled series of any kind.
    pub fn series<M: Series>(
        &self,
        name: &str,
        help: &str,
        options: &M::Options,
    ) -> Result<M, MetricsError> {
        check_metric_name(name)?;
        let value = M::create(options);
        self.insert(name, help, Arc::new(Single(value.clone())))?;
        Ok(value)
    }

    /// A labelled family of any kind; label values are given per use with [`Family::with`].
    pub fn family<M: Series>(
        &self,
        name: &str,
        help: &str,
        label_names: &[&str],
        options: M::Options,
    ) -> Result<Family<M>, MetricsError> {
        check_metric_name(name)?;
        for (i, label) in label_names.iter().enumerate() {
            let reserved =
                label.starts_with("__") || (M::KIND == Kind::Histogram && *label == "le");
            if reserved || !is_label_name(label) {
                return Err(MetricsError::InvalidLabel {
                    name: name.to_owned(),
                    label: (*label).to_owned(),
                });
            }
            if label_names[..i].contains(label) {
                return Err(MetricsError::DuplicateLabel {
                    name: name.to_owned(),
                    label: (*label).to_owned(),
                });
            }
        }
        let family = Family::new(label_names, options);
        self.insert(name, help, Arc::new(family.clone()))?;
        Ok(family)
    }

    /// Exports `series` a second time under `name` (same values, its own HELP), e.g. etcd's name
    /// for a Cairn metric.
    pub fn alias<M: Series>(&self, name: &str, help: &str, series: &M) -> Result<(), MetricsError> {
        check_metric_name(name)?;
        self.insert(name, help, Arc::new(Single(series.clone())))
    }

    /// Exports `family` a second time under `name`, with the same label names.
    pub fn alias_family<M: Series>(
        &self,
        name: &str,
        help: &str,
        family: &Family<M>,
    ) -> Result<(), MetricsError> {
        check_metric_name(name)?;
        self.insert(name, help, Arc::new(family.clone()))
    }

    fn insert(&self, name: &str, help: &str, source: Arc<dyn Collect>) -> Result<(), MetricsError> {
        let mut families = self.families.write();
        if families.contains_key(name) {
            return Err(MetricsError::AlreadyRegistered {
                name: name.to_owned(),
            });
        }
        if families.len() >= MAX_FAMILIES {
            return Err(MetricsError::TooManyFamilies { max: MAX_FAMILIES });
        }
        families.insert(
            name.to_owned(),
            Entry {
                help: help.to_owned(),
                source,
            },
        );
        Ok(())
    }

    /// The text exposition of every family, in name order.
    pub fn render(&self) -> String {
        let families = self.families.read();
        let mut out = String::with_capacity(families.len() * 256);
        for (name, entry) in families.iter() {
            if entry.source.is_empty() {
                continue;
            }
            out.push_str("# HELP ");
            out.push_str(name);
            out.push(' ');
            text::push_help(&mut out, &entry.help);
            out.push_str("\n# TYPE ");
            out.push_str(name);
            out.push(' ');
            out.push_str(entry.source.kind().as_str());
            out.push('\n');
            entry.source.render_samples(name, &mut out);
        }
        out
    }
}

fn check_metric_name(name: &str) -> Result<(), MetricsError> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    if first_ok && rest_ok && name.len() <= MAX_NAME_BYTES {
        Ok(())
    } else {
        Err(MetricsError::InvalidName {
            name: name.to_owned(),
            max_bytes: MAX_NAME_BYTES,
        })
    }
}

fn is_label_name(label: &str) -> bool {
    let mut chars = label.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && label.len() <= MAX_NAME_BYTES
}

#[cfg(test)]
mod tests;
