//! Compiles the Envoy API protos that ship inside the `envoy-types` crate, plus this
//! repository's own `proto/` tree (Istio extension messages that envoy-types lacks), into one
//! descriptor set for `prost-reflect`. `protox` is a pure-Rust compiler: no system `protoc`.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Proto roots inside envoy-types' `proto/` directory, used as include paths.
const ENVOY_TYPES_ROOTS: &[&str] = &[
    "data-plane-api",
    "xds",
    "googleapis",
    "protoc-gen-validate",
    "cel-spec/proto",
    "opentelemetry-proto",
    "client_model",
];

/// Directories (relative to a root) whose files go into the descriptor set. Imports they need
/// are pulled in automatically.
const COMPILED_DIRS: &[(&str, &str)] = &[
    ("data-plane-api", "envoy/config"),
    ("data-plane-api", "envoy/extensions"),
    ("data-plane-api", "envoy/admin/v3"),
    ("data-plane-api", "envoy/service/discovery/v3"),
    ("data-plane-api", "envoy/service/secret/v3"),
    ("xds", "xds/type"),
];

fn main() {
    let proto_root = envoy_types_proto_dir();
    let own = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("proto");
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=build.rs");

    let mut includes: Vec<PathBuf> = ENVOY_TYPES_ROOTS
        .iter()
        .map(|r| proto_root.join(r))
        .filter(|p| p.is_dir())
        .collect();
    if own.is_dir() {
        includes.push(own.clone());
    }

    let mut files: Vec<PathBuf> = Vec::new();
    for (root, dir) in COMPILED_DIRS {
        let base = proto_root.join(root);
        collect_protos(&base.join(dir), &base, &mut files);
    }
    if own.is_dir() {
        collect_protos(&own, &own, &mut files);
    }
    files.sort();

    // One compiler per file: protobuf resolves a relative type name only among the symbols a
    // file can see through its imports (as protoc does), while one compiler for all files would
    // see every package and mis-resolve names such as `common.dynamic_forward_proxy.v3.X`.
    let mut seen = std::collections::HashSet::new();
    let mut set = prost_types::FileDescriptorSet::default();
    let mut sensitive: Vec<String> = Vec::new();
    for file in &files {
        let mut compiler = protox::Compiler::new(&includes).expect("protox include paths");
        compiler.include_imports(true).include_source_info(false);
        if let Err(e) = compiler.open_file(file) {
            // protox resolves relative names more strictly than protoc in a few Envoy files
            // (a package visible through an import shadows an outer one). Such a file is left
            // out of the pool, and the build says which.
            println!("cargo:warning=proto left out of the descriptor pool: {e}");
            continue;
        }
        // `prost_types` drops custom options, so the fields marked `udpa.annotations.sensitive`
        // (which `/config_dump` redacts) are listed here, from protox's own pool.
        let pool = compiler.descriptor_pool();
        if let Some(ext) = pool.get_extension_by_name("udpa.annotations.sensitive") {
            for f in pool.files().filter(|f| !seen.contains(f.name())) {
                let mut stack: Vec<_> = f.messages().collect();
                while let Some(m) = stack.pop() {
                    stack.extend(m.child_messages());
                    for field in m.fields() {
                        let opts = field.options();
                        if opts.has_extension(&ext)
                            && opts.get_extension(&ext).as_bool() == Some(true)
                        {
                            sensitive.push(field.full_name().to_string());
                        }
                    }
                }
            }
        }
        for fd in compiler.file_descriptor_set().file {
            if seen.insert(fd.name().to_string()) {
                set.file.push(fd);
            }
        }
    }
    let bytes = prost::Message::encode_to_vec(&set);
    let out =
        PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("descriptor.bin");
    std::fs::write(&out, bytes).expect("writing the descriptor set");
    sensitive.sort();
    sensitive.dedup();
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("sensitive_fields.txt");
    std::fs::write(&out, sensitive.join("\n")).expect("writing the sensitive field list");
}

/// Every `.proto` below `dir`, as paths relative to `base` (protox resolves them against the
/// include paths).
fn collect_protos(dir: &Path, base: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_protos(&path, base, out);
        } else if path.extension().is_some_and(|e| e == "proto")
            && let Ok(rel) = path.strip_prefix(base)
        {
            out.push(rel.to_path_buf());
        }
    }
}

/// The `proto/` directory of the envoy-types package this build links, found with
/// `cargo metadata` filtered to the target platform.
fn envoy_types_proto_dir() -> PathBuf {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest_dir = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let target = env::var("TARGET").expect("cargo sets TARGET");
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--filter-platform",
            &target,
            "--manifest-path",
        ])
        .arg(Path::new(&manifest_dir).join("Cargo.toml"))
        .output()
        .expect("running cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata JSON");
    let packages = meta["packages"]
        .as_array()
        .expect("cargo metadata packages");
    let pkg = packages
        .iter()
        .find(|p| p["name"] == "envoy-types")
        .expect("envoy-types is a dependency");
    let manifest = PathBuf::from(pkg["manifest_path"].as_str().expect("manifest_path"));
    manifest
        .parent()
        .expect("manifest has a parent")
        .join("proto")
}
