//! The API agrees with its documents: every endpoint the router serves (`api::ENDPOINTS`) is in
//! `docs/api.md` and in the OpenAPI document, and every endpoint of the shared contract
//! (`docs/contract/API.md`, a copy of `../shared/docs/API.md` checked against it when present)
//! is served.

use std::collections::BTreeSet;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// `{anything}` and what follows it up to the next `/` count as one parameter: the table's
/// `segments/{file}` is the doc's `segments/{seq}.mp4`.
fn normalize(path: &str) -> String {
    let path = path.split(['?', '[']).next().unwrap_or(path);
    path.split('/')
        .map(|seg| if seg.starts_with('{') { "{}" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

/// Every `METHOD[|METHOD] /path` in backticks in the document's table rows.
fn documented(text: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for line in text.lines().filter(|l| l.starts_with('|')) {
        for (i, span) in line.split('`').enumerate() {
            if i % 2 == 0 {
                continue;
            }
            let mut words = span.split_whitespace();
            let (Some(methods), Some(path)) = (words.next(), words.next()) else {
                continue;
            };
            if !path.starts_with('/') {
                continue;
            }
            for m in methods.split(['|', '\\']).filter(|m| !m.is_empty()) {
                if m.chars().all(|c| c.is_ascii_uppercase()) {
                    out.insert((m.to_owned(), normalize(path)));
                }
            }
        }
    }
    out
}

fn served() -> BTreeSet<(String, String)> {
    api::ENDPOINTS
        .iter()
        .map(|e| (e.method.to_owned(), normalize(e.path)))
        .collect()
}

#[test]
fn docs_api_md_lists_every_endpoint() {
    let doc = documented(&std::fs::read_to_string(root().join("docs/api.md")).unwrap());
    let missing: Vec<_> = served().difference(&doc).cloned().collect();
    assert!(missing.is_empty(), "served but not in docs/api.md: {missing:?}");
    // And it documents nothing that is not served (HEAD rides on GET).
    let extra: Vec<_> = doc
        .difference(&served())
        .filter(|(m, p)| !(m == "HEAD" && served().contains(&("GET".to_owned(), p.clone()))))
        .filter(|(_, p)| {
            p != "/healthz"
                && !api::ui::PAGES.iter().any(|u| normalize(u) == *p)
                && normalize(api::ui::ASSET_PATH) != *p
        })
        .cloned()
        .collect();
    assert!(extra.is_empty(), "in docs/api.md but not served: {extra:?}");
}

#[test]
fn the_shared_contract_is_served() {
    let copy = std::fs::read_to_string(root().join("docs/contract/API.md")).unwrap();
    if let Ok(upstream) = std::fs::read_to_string(root().join("../shared/docs/API.md")) {
        assert_eq!(
            copy, upstream,
            "docs/contract/API.md is out of date: copy ../shared/docs/API.md"
        );
    }
    let contract = documented(&copy);
    assert!(contract.len() >= 15, "{contract:?}");
    let missing: Vec<_> = contract.difference(&served()).cloned().collect();
    assert!(missing.is_empty(), "in the contract but not served: {missing:?}");
}

#[test]
fn the_openapi_document_is_the_endpoint_table() {
    let doc = api::openapi::document();
    let paths: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_uppercase(), normalize(p)))
        })
        .collect();
    assert_eq!(paths, served());
    assert_eq!(doc["openapi"], "3.1.0");
    // Every operation says what it needs and answers errors in the API's one form.
    for (_, ops) in doc["paths"].as_object().unwrap() {
        for (_, op) in ops.as_object().unwrap() {
            assert!(op["x-sharpeye-access"].is_string());
            assert!(op["responses"]["404"]["content"]["application/json"]["schema"]["$ref"].is_string());
        }
    }
}

#[test]
fn the_grafana_dashboard_reads_only_metrics_the_node_exposes() {
    let text = std::fs::read_to_string(root().join("docs/grafana/sharpeye-node.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let metrics = std::fs::read_to_string(root().join("crates/api/src/metrics.rs")).unwrap();
    let mut used = BTreeSet::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(i) = rest.find("sharpeye_") {
                let name: String = rest[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[i + name.len()..];
                used.insert(name);
            }
        }
    }
    assert!(used.len() >= 15, "{used:?}");
    let missing: Vec<_> = used.iter().filter(|n| !metrics.contains(&format!("\"{n}\""))).collect();
    assert!(
        missing.is_empty(),
        "the dashboard reads metrics /metrics does not expose: {missing:?}"
    );
}
