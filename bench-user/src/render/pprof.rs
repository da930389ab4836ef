//! `profile.pb.gz`: the on-CPU graph in pprof's format, for `go tool pprof`,
//! speedscope and the other tools that read it.
//!
//! Only the messages and fields protoprof fills are declared; their numbers
//! are those of google/pprof's proto/profile.proto. Frames carry names but no
//! addresses, so there are no mappings: one location per distinct frame.

use std::collections::HashMap;

use prost::Message;

use crate::report::{FoldedGraph, Report};

#[derive(Clone, PartialEq, Message)]
pub struct Profile {
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<Sample>,
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
    #[prost(int64, tag = "9")]
    pub time_nanos: i64,
    #[prost(int64, tag = "10")]
    pub duration_nanos: i64,
    #[prost(message, optional, tag = "11")]
    pub period_type: Option<ValueType>,
    #[prost(int64, tag = "12")]
    pub period: i64,
    #[prost(int64, repeated, tag = "13")]
    pub comment: Vec<i64>,
    #[prost(int64, tag = "14")]
    pub default_sample_type: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct ValueType {
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    /// Leaf first.
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
    #[prost(message, repeated, tag = "3")]
    pub label: Vec<Label>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Label {
    #[prost(int64, tag = "1")]
    pub key: i64,
    #[prost(int64, tag = "2")]
    pub str: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct Location {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Line {
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
}

#[derive(Clone, PartialEq, Message)]
pub struct Function {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(int64, tag = "2")]
    pub name: i64,
    #[prost(int64, tag = "3")]
    pub system_name: i64,
    #[prost(int64, tag = "4")]
    pub filename: i64,
}

/// The suffix fold gives kernel frames (inferno's convention).
const KERNEL_SUFFIX: &str = "_[k]";
/// The file name kernel functions get, so pprof can tell them apart.
pub const KERNEL_FILE: &str = "[kernel]";

/// The string table: index 0 is "" as pprof requires.
struct Strings {
    table: Vec<String>,
    index: HashMap<String, i64>,
}

impl Strings {
    fn new() -> Self {
        let mut s = Strings {
            table: Vec::new(),
            index: HashMap::new(),
        };
        s.id("");
        s
    }

    fn id(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }

    fn value_type(&mut self, kind: &str, unit: &str) -> ValueType {
        ValueType {
            r#type: self.id(kind),
            unit: self.id(unit),
        }
    }
}

/// One location (and function) per distinct frame name.
struct Frames {
    ids: HashMap<String, u64>,
    locations: Vec<Location>,
    functions: Vec<Function>,
}

impl Frames {
    fn id(&mut self, frame: &str, strings: &mut Strings) -> u64 {
        if let Some(&id) = self.ids.get(frame) {
            return id;
        }
        let (name, file) = match frame.strip_suffix(KERNEL_SUFFIX) {
            Some(name) => (name, KERNEL_FILE),
            None => (frame, ""),
        };
        // Ids start at 1: 0 means "unset" in pprof.
        let id = self.locations.len() as u64 + 1;
        let name = strings.id(name);
        self.functions.push(Function {
            id,
            name,
            system_name: name,
            filename: strings.id(file),
        });
        self.locations.push(Location {
            id,
            line: vec![Line { function_id: id }],
        });
        self.ids.insert(frame.to_string(), id);
        id
    }
}

/// The report's `cpu` graph as a pprof profile. Each folded stack is one
/// sample; its first two elements (role, thread) become labels. Without a
/// cpu graph the profile has no samples and a comment saying why.
pub fn profile(r: &Report, graphs: &[FoldedGraph]) -> Profile {
    let mut strings = Strings::new();
    let hz = r.probes.options.cpu_frequency_hz.filter(|&hz| hz > 0);
    let period_ns = hz.map(|hz| 1_000_000_000 / hz as i64);
    let mut sample_type = vec![strings.value_type("samples", "count")];
    if period_ns.is_some() {
        sample_type.push(strings.value_type("cpu", "nanoseconds"));
    }
    let mut comment = vec![strings.id(&format!(
        "protoprof {} ({}) run {}",
        r.run.profile, r.run.protocol, r.run.id
    ))];
    let mut frames = Frames {
        ids: HashMap::new(),
        locations: Vec::new(),
        functions: Vec::new(),
    };
    let mut samples = Vec::new();
    match graphs.iter().find(|g| g.name == "cpu") {
        Some(graph) => samples = cpu_samples(graph, period_ns, &mut strings, &mut frames),
        None => comment.push(strings.id("no cpu graph: the cpu probe was off")),
    }
    let period_type = period_ns.map(|_| strings.value_type("cpu", "nanoseconds"));
    let default_sample_type = sample_type.last().map(|t| t.r#type).unwrap_or(0);
    Profile {
        sample_type,
        sample: samples,
        location: frames.locations,
        function: frames.functions,
        string_table: strings.table,
        time_nanos: start_nanos(&r.run.started_at),
        duration_nanos: (r.run.measured_s * 1e9) as i64,
        period_type,
        period: period_ns.unwrap_or(0),
        comment,
        default_sample_type,
    }
}

fn cpu_samples(
    graph: &FoldedGraph,
    period_ns: Option<i64>,
    strings: &mut Strings,
    frames: &mut Frames,
) -> Vec<Sample> {
    let role_key = strings.id("role");
    let thread_key = strings.id("thread");
    graph
        .stacks
        .iter()
        .map(|s| {
            let mut parts = s.stack.split(';');
            let role = parts.next().unwrap_or("");
            let thread = parts.next().unwrap_or("");
            let outermost_first: Vec<&str> = parts.collect();
            let location_id = outermost_first
                .iter()
                .rev()
                .map(|f| frames.id(f, strings))
                .collect();
            let count = s.count as i64;
            let mut value = vec![count];
            if let Some(p) = period_ns {
                value.push(count.saturating_mul(p));
            }
            Sample {
                location_id,
                value,
                label: vec![
                    Label {
                        key: role_key,
                        str: strings.id(role),
                    },
                    Label {
                        key: thread_key,
                        str: strings.id(thread),
                    },
                ],
            }
        })
        .collect()
}

/// RFC 3339 → ns since the epoch; 0 (unset) when it does not parse.
fn start_nanos(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .unwrap_or(0)
}

/// The profile, protobuf-encoded (not yet gzipped).
pub fn encode(r: &Report, graphs: &[FoldedGraph]) -> Vec<u8> {
    profile(r, graphs).encode_to_vec()
}
