//! A metric family with labels: one series per distinct set of label values, created on first
//! use and kept for the life of the process (as the Prometheus Go client's `*Vec` types do).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use parking_lot::RwLock;

use super::series::Series;
use super::text::push_label_value;
use super::{Collect, Kind};

/// At most this many label sets per family. Label values come from code (method names, status
/// codes), but a bug that labels by request data must not grow memory without bound: past the
/// limit `with` hands out a detached series that records but is not exported.
pub const MAX_SERIES_PER_FAMILY: usize = 4096;

/// A family of series of type `M` told apart by label values, e.g. `Family<Counter>` for
/// `cairn_grpc_requests_total{code,method}`.
pub struct Family<M: Series> {
    inner: Arc<FamilyInner<M>>,
}

impl<M: Series> Clone for Family<M> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

struct FamilyInner<M: Series> {
    label_names: Box<[String]>,
    options: M::Options,
    /// Keyed by the length-prefixed concatenation of the label values (unambiguous for any
    /// values, unlike joining with a separator).
    series: RwLock<HashMap<String, LabelledSeries<M>>>,
}

struct LabelledSeries<M> {
    values: Box<[String]>,
    /// `a="x",b="y"`, escaped once at creation.
    rendered_labels: String,
    value: M,
}

impl<M: Series> Family<M> {
    pub(crate) fn new(label_names: &[&str], options: M::Options) -> Self {
        Self {
            inner: Arc::new(FamilyInner {
                label_names: label_names.iter().map(|n| (*n).to_owned()).collect(),
                options,
                series: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// The label names, in the order `with` takes their values and the output shows them.
    pub fn label_names(&self) -> &[String] {
        &self.inner.label_names
    }

    /// The series for these label values (one per label name, in declaration order), created at
    /// zero on first use. Keep the returned handle on hot paths to skip the lookup.
    ///
    /// A wrong number of values is a programming error: debug builds assert; release builds
    /// hand out a detached series rather than export a malformed one.
    pub fn with(&self, values: &[&str]) -> M {
        let inner = &self.inner;
        // Why: the output would otherwise carry series whose labels do not match the family's.
        debug_assert_eq!(values.len(), inner.label_names.len(), "label value count");
        if values.len() != inner.label_names.len() {
            return M::create(&inner.options);
        }
        let key = series_key(values);
        if let Some(found) = inner.series.read().get(&key) {
            return found.value.clone();
        }
        let mut series = inner.series.write();
        if let Some(found) = series.get(&key) {
            return found.value.clone();
        }
        let value = M::create(&inner.options);
        if series.len() >= MAX_SERIES_PER_FAMILY {
            return value;
        }
        let mut rendered_labels = String::new();
        for (i, (name, v)) in inner.label_names.iter().zip(values).enumerate() {
            if i > 0 {
                rendered_labels.push(',');
            }
            let _ = write!(rendered_labels, "{name}=\"");
            push_label_value(&mut rendered_labels, v);
            rendered_labels.push('"');
        }
        series.insert(
            key,
            LabelledSeries {
                values: values.iter().map(|v| (*v).to_owned()).collect(),
                rendered_labels,
                value: value.clone(),
            },
        );
        value
    }

    /// Number of exported label sets.
    pub fn len(&self) -> usize {
        self.inner.series.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn series_key(values: &[&str]) -> String {
    let mut key = String::with_capacity(values.iter().map(|v| v.len() + 4).sum());
    for v in values {
        let _ = write!(key, "{}:{v}", v.len());
    }
    key
}

impl<M: Series> Collect for Family<M> {
    fn kind(&self) -> Kind {
        M::KIND
    }

    fn is_empty(&self) -> bool {
        Family::is_empty(self)
    }

    fn render_samples(&self, name: &str, out: &mut String) {
        let series = self.inner.series.read();
        let mut sorted: Vec<&LabelledSeries<M>> = series.values().collect();
        // Sorted by label values so that two scrapes list series in the same order.
        sorted.sort_by(|a, b| a.values.cmp(&b.values));
        for s in sorted {
            s.value.render(name, &s.rendered_labels, out);
        }
    }
}
