//! Cairn's .proto files carry exactly etcd's wire facts: every message, field (name, number,
//! type, label, oneof), enum value and RPC of etcd's own API definitions is present in ours,
//! unchanged. Ours may add only the etcd 3.5 additions listed below.
//!
//! The reference is etcd's API definitions as Debian ships them (`golang-etcd-server-dev`, etcd
//! 3.4) under `/usr/share/gocode/src/go.etcd.io`, or under `$CAIRN_ETCD_PROTO_ROOT`. They are
//! compiled here with the same pure-Rust compiler as ours, after dropping the Go code-generation
//! and HTTP-gateway annotations, which do not touch the wire.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use prost::Message;
use prost_types::{DescriptorProto, FileDescriptorSet};
use protox::file::{File, FileResolver};

const DEFAULT_ROOT: &str = "/usr/share/gocode/src/go.etcd.io";

/// etcd's API files, named as their imports name them (relative to the root).
const REFERENCE_FILES: &[&str] = &[
    "etcd/mvcc/mvccpb/kv.proto",
    "etcd/auth/authpb/auth.proto",
    "etcd/etcdserver/etcdserverpb/rpc.proto",
    "etcd/etcdserver/api/v3lock/v3lockpb/v3lock.proto",
    "etcd/etcdserver/api/v3election/v3electionpb/v3election.proto",
];

/// What etcd 3.5 added to the 3.4 reference, and so what ours may have beyond it, with the
/// field numbers etcd 3.5 gave the new fields (0 where the entry is not a field).
const ADDED_IN_3_5: &[(&str, i32)] = &[
    ("message .etcdserverpb.AuthStatusRequest", 0),
    ("message .etcdserverpb.AuthStatusResponse", 0),
    ("field .etcdserverpb.AuthStatusResponse.header", 1),
    ("field .etcdserverpb.AuthStatusResponse.enabled", 2),
    ("field .etcdserverpb.AuthStatusResponse.authRevision", 3),
    ("message .etcdserverpb.DowngradeRequest", 0),
    ("field .etcdserverpb.DowngradeRequest.action", 1),
    ("field .etcdserverpb.DowngradeRequest.version", 2),
    ("enum .etcdserverpb.DowngradeRequest.DowngradeAction", 0),
    ("message .etcdserverpb.DowngradeResponse", 0),
    ("field .etcdserverpb.DowngradeResponse.header", 1),
    ("field .etcdserverpb.DowngradeResponse.version", 2),
    ("field .etcdserverpb.AuthUserAddRequest.hashedPassword", 4),
    (
        "field .etcdserverpb.AuthUserChangePasswordRequest.hashedPassword",
        3,
    ),
    ("field .etcdserverpb.HashKVResponse.hash_revision", 4),
    ("field .etcdserverpb.MemberListRequest.linearizable", 1),
    ("rpc .etcdserverpb.Auth.AuthStatus", 0),
    ("rpc .etcdserverpb.Maintenance.Downgrade", 0),
];

/// Reads etcd's files and removes what only Go code generation and the HTTP gateway read.
struct StrippedReference {
    root: PathBuf,
}

impl FileResolver for StrippedReference {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        let path = self.root.join(name);
        let text =
            std::fs::read_to_string(&path).map_err(|_| protox::Error::file_not_found(name))?;
        File::from_source(name, &strip_annotations(&text))
    }
}

fn strip_annotations(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_http_option = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        // Dropped lines stay as empty lines, so errors point at the original line numbers.
        if in_http_option {
            in_http_option = !trimmed.starts_with("};");
            out.push('\n');
            continue;
        }
        if trimmed.starts_with("option (google.api.http)") {
            in_http_option = !trimmed.ends_with("};");
            out.push('\n');
            continue;
        }
        let dropped = trimmed.starts_with("import \"gogoproto/")
            || trimmed.starts_with("import \"google/api/")
            || trimmed.starts_with("option (gogoproto.");
        if !dropped {
            out.push_str(line);
        }
        out.push('\n');
    }
    assert!(
        !out.contains("gogoproto"),
        "an annotation form this test does not strip"
    );
    out
}

/// One wire fact per entry, keyed by a readable path such as `field .etcdserverpb.Compare.key`.
type Facts = BTreeMap<String, String>;

fn facts(set: &FileDescriptorSet) -> Facts {
    let etcd_packages = [
        "etcdserverpb",
        "mvccpb",
        "authpb",
        "v3lockpb",
        "v3electionpb",
    ];
    let mut facts = Facts::new();
    for file in set
        .file
        .iter()
        .filter(|f| etcd_packages.contains(&f.package()))
    {
        let package = format!(".{}", file.package());
        let mut stack: Vec<(String, &DescriptorProto)> = file
            .message_type
            .iter()
            .map(|m| (format!("{package}.{}", m.name()), m))
            .collect();
        while let Some((name, message)) = stack.pop() {
            facts.insert(format!("message {name}"), String::new());
            for field in &message.field {
                let oneof = field
                    .oneof_index
                    .and_then(|i| message.oneof_decl.get(usize::try_from(i).ok()?))
                    .map(|o| o.name().to_string());
                let fact = format!(
                    "number={} type={:?} type_name={} label={:?} oneof={:?}",
                    field.number(),
                    field.r#type(),
                    field.type_name(),
                    field.label(),
                    oneof
                );
                facts.insert(format!("field {name}.{}", field.name()), fact);
            }
            for nested_enum in &message.enum_type {
                insert_enum(
                    &mut facts,
                    &format!("{name}.{}", nested_enum.name()),
                    nested_enum,
                );
            }
            stack.extend(
                message
                    .nested_type
                    .iter()
                    .map(|m| (format!("{name}.{}", m.name()), m)),
            );
        }
        for top_enum in &file.enum_type {
            insert_enum(
                &mut facts,
                &format!("{package}.{}", top_enum.name()),
                top_enum,
            );
        }
        for service in &file.service {
            for method in &service.method {
                let fact = format!(
                    "in={} out={} client_streaming={} server_streaming={}",
                    method.input_type(),
                    method.output_type(),
                    method.client_streaming(),
                    method.server_streaming()
                );
                facts.insert(
                    format!("rpc {package}.{}.{}", service.name(), method.name()),
                    fact,
                );
            }
        }
    }
    facts
}

fn insert_enum(facts: &mut Facts, name: &str, descriptor: &prost_types::EnumDescriptorProto) {
    facts.insert(format!("enum {name}"), String::new());
    for value in &descriptor.value {
        facts.insert(
            format!("enum-value {name}.{}", value.name()),
            value.number().to_string(),
        );
    }
}

fn reference_root() -> PathBuf {
    let root = std::env::var_os("CAIRN_ETCD_PROTO_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT));
    assert!(
        root.join(REFERENCE_FILES[2]).is_file(),
        "etcd's API definitions are not at {}: install them with \
         `apt-get install -y golang-etcd-server-dev` or set CAIRN_ETCD_PROTO_ROOT",
        root.display()
    );
    root
}

#[test]
fn every_etcd_wire_fact_is_ours_too() {
    let mut compiler = protox::Compiler::with_file_resolver(StrippedReference {
        root: reference_root(),
    });
    compiler.include_imports(true);
    for file in REFERENCE_FILES {
        compiler
            .open_file(file)
            .unwrap_or_else(|err| panic!("reference {file} compiles: {err:?}"));
    }
    let reference = facts(&compiler.file_descriptor_set());
    let ours = facts(
        &FileDescriptorSet::decode(cairn::proto::FILE_DESCRIPTOR_SET).expect("descriptor decodes"),
    );

    // Guard against a reference that silently came out (nearly) empty.
    let rpcs = reference.keys().filter(|k| k.starts_with("rpc ")).count();
    let fields = reference.keys().filter(|k| k.starts_with("field ")).count();
    assert!(
        rpcs >= 46 && fields >= 240,
        "reference looks incomplete: {rpcs} rpcs, {fields} fields"
    );

    let mut differences = Vec::new();
    for (key, fact) in &reference {
        match ours.get(key) {
            None => differences.push(format!("missing: {key} ({fact})")),
            Some(our_fact) if our_fact != fact => {
                differences.push(format!("differs: {key}: etcd {fact}, ours {our_fact}"))
            }
            Some(_) => {}
        }
    }
    assert!(
        differences.is_empty(),
        "wire facts differ from etcd's:\n{}",
        differences.join("\n")
    );

    // Beyond 3.4, ours adds exactly the 3.5 additions (and their enum values).
    let extra: BTreeSet<&str> = ours
        .keys()
        .filter(|k| !reference.contains_key(*k) && !k.starts_with("enum-value "))
        .map(String::as_str)
        .collect();
    let expected: BTreeSet<&str> = ADDED_IN_3_5.iter().map(|(key, _)| *key).collect();
    assert_eq!(
        extra, expected,
        "additions beyond etcd 3.4 are exactly etcd 3.5's"
    );
    for (key, number) in ADDED_IN_3_5
        .iter()
        .filter(|(key, _)| key.starts_with("field "))
    {
        let fact = &ours[*key];
        assert!(
            fact.starts_with(&format!("number={number} ")),
            "{key}: {fact}"
        );
    }
}

#[test]
fn stripping_keeps_everything_but_annotations() {
    let text = "syntax = \"proto3\";\nimport \"gogoproto/gogo.proto\";\n\
                option (gogoproto.marshaler_all) = true;\nservice S {\n  rpc A(B) returns (C) {\n\
                \x20     option (google.api.http) = {\n        post: \"/v3/a\"\n        body: \"*\"\n\
                \x20   };\n  }\n}\n";
    let stripped = strip_annotations(text);
    assert!(!stripped.contains("google.api") && !stripped.contains("post:"));
    assert!(stripped.contains("rpc A(B) returns (C) {") && stripped.contains("syntax"));
    // Line numbers are kept so compile errors point at the original file's lines.
    assert_eq!(stripped.lines().count(), text.lines().count());
}
