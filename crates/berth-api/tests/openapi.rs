//! Every wire type agrees with `docs/openapi.json`: a sample of each, with every optional
//! field filled, serialises to exactly the properties its schema documents (recursively,
//! with the documented types and enum values), and reads back unchanged; every enum's
//! values are the documented ones; the query types carry the documented parameters.
//!
//! So a field renamed, added or dropped on one side, the code or the document, fails here.

use std::collections::BTreeSet;
use std::fmt::Debug;

use berth_api::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

const DOC: &str = include_str!("../../../docs/openapi.json");

fn doc() -> Value {
    serde_json::from_str(DOC).expect("docs/openapi.json is JSON")
}

/// Follows `$ref` and a one-element `allOf`.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let pointer = reference.trim_start_matches('#');
        return resolve(doc, doc.pointer(pointer).expect("a $ref that resolves"));
    }
    if let Some([only]) = schema
        .get("allOf")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
    {
        return resolve(doc, only);
    }
    schema
}

/// The JSON types a schema allows (`type`, a list of types, `nullable`).
fn types(schema: &Value) -> BTreeSet<String> {
    let mut types: BTreeSet<String> = match schema.get("type") {
        Some(Value::String(t)) => [t.clone()].into(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => BTreeSet::new(),
    };
    if schema.get("nullable") == Some(&Value::Bool(true)) {
        types.insert("null".into());
    }
    types
}

fn type_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Checks `value` against `schema`, collecting every disagreement with where it is.
fn check(doc: &Value, schema: &Value, value: &Value, at: &str, problems: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    let allowed = types(schema);
    if !allowed.is_empty() && !allowed.contains(type_of(value)) {
        problems.push(format!(
            "{at}: a {} where the document says {allowed:?}",
            type_of(value)
        ));
        return;
    }
    if let (Some(values), Value::String(_)) = (schema.get("enum").and_then(Value::as_array), value)
        && !values.contains(value)
    {
        problems.push(format!("{at}: {value} is not one of {values:?}"));
    }
    match value {
        Value::Object(fields) => {
            let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
                return; // A free-form object, such as an error's detail.
            };
            let written: BTreeSet<&String> = fields.keys().collect();
            let documented: BTreeSet<&String> = properties.keys().collect();
            for missing in documented.difference(&written) {
                problems.push(format!("{at}: documented `{missing}` is not written"));
            }
            for extra in written.difference(&documented) {
                problems.push(format!("{at}: `{extra}` is written but not documented"));
            }
            for required in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !properties.contains_key(required) {
                    problems.push(format!("{at}: required `{required}` is not a property"));
                }
            }
            for (name, field) in fields {
                if let Some(property) = properties.get(name) {
                    check(doc, property, field, &format!("{at}.{name}"), problems);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(doc, item_schema, item, &format!("{at}[{i}]"), problems);
                }
            }
        }
        _ => {}
    }
}

/// `sample` matches the schema `name`, and reads back as itself.
fn agrees<T: Serialize + DeserializeOwned + PartialEq + Debug>(
    doc: &Value,
    name: &str,
    sample: &T,
    problems: &mut Vec<String>,
) {
    let value = serde_json::to_value(sample).expect("a wire type serialises");
    let schema = doc
        .pointer(&format!("/components/schemas/{name}"))
        .unwrap_or_else(|| panic!("docs/openapi.json has no schema `{name}`"));
    check(doc, schema, &value, name, problems);
    let back: T = serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("{name} does not read back ({e}): {value}"));
    if &back != sample {
        problems.push(format!("{name}: reads back as {back:?}"));
    }
}

fn rule() -> RepositoryRule {
    RepositoryRule {
        repository: "team/*".into(),
        actions: vec!["content/read".into()],
    }
}

fn gateway() -> GatewayRule {
    GatewayRule {
        connected_registry: "factory".into(),
        actions: vec!["config/read".into()],
    }
}

fn scope_map() -> ScopeMapView {
    ScopeMapView {
        name: "team-pull".into(),
        description: "pulls".into(),
        built_in: false,
        created_at: Some("2026-01-31T00:00:00Z".into()),
        repositories: vec![rule()],
        gateways: vec![gateway()],
        actions: vec!["repositories/team/*/content/read".into()],
    }
}

fn new_password() -> NewPassword {
    NewPassword {
        name: PasswordSlot::Password2,
        value: "secret".into(),
        created_at: "2026-01-31T00:00:00Z".into(),
        expiry: Some("2027-01-31T00:00:00Z".into()),
    }
}

fn token() -> TokenView {
    TokenView {
        name: "robot".into(),
        scope_map: "team-pull".into(),
        status: TokenStatus::Disabled,
        created_at: "2026-01-31T00:00:00Z".into(),
        passwords: vec![PasswordView {
            name: PasswordSlot::Password1,
            created_at: "2026-01-31T00:00:00Z".into(),
            expiry: Some("2027-01-31T00:00:00Z".into()),
            expired: false,
        }],
    }
}

fn connection() -> ConnectionView {
    ConnectionView {
        name: "plant".into(),
        state: PrivateEndpointState::Approved,
        description: "the plant's VLAN".into(),
        configured: true,
        address: Some("10.0.0.5:5000".into()),
        url: Some("https://10.0.0.5:5000".into()),
        updated_at: Some("2026-01-31T00:00:00Z".into()),
    }
}

#[test]
fn every_type_writes_what_the_document_describes() {
    let doc = doc();
    let p = &mut Vec::new();
    agrees(
        &doc,
        "Errors",
        &ErrorBody::one("NOT_FOUND", "no".into(), Some(json!({"size": 1}))),
        p,
    );
    agrees(
        &doc,
        "Registry",
        &RegistryView {
            admin_username: "admin".into(),
            anonymous_pull_enabled: true,
            public_network_enabled: true,
            default_action: DefaultAction::Deny,
            data_endpoint_enabled: false,
            version: "0.1.0".into(),
        },
        p,
    );
    agrees(
        &doc,
        "RegistryUpdate",
        &RegistryUpdate {
            anonymous_pull_enabled: Some(true),
            public_network_enabled: Some(false),
            default_action: Some("Allow".into()),
            data_endpoint_enabled: Some(true),
        },
        p,
    );
    agrees(&doc, "RepositoryRule", &rule(), p);
    agrees(&doc, "GatewayRule", &gateway(), p);
    agrees(&doc, "ScopeMap", &scope_map(), p);
    agrees(
        &doc,
        "ScopeMapCreate",
        &ScopeMapCreate {
            name: "team-pull".into(),
            description: "pulls".into(),
            repositories: vec![rule()],
            gateways: vec![gateway()],
        },
        p,
    );
    agrees(
        &doc,
        "ScopeMapUpdate",
        &ScopeMapPatch {
            description: Some("pulls".into()),
            add_repositories: vec![rule()],
            remove_repositories: vec![rule()],
            add_gateways: vec![gateway()],
            remove_gateways: vec![gateway()],
        },
        p,
    );
    agrees(&doc, "Password", &token().passwords[0], p);
    agrees(&doc, "NewPassword", &new_password(), p);
    agrees(&doc, "Token", &token(), p);
    agrees(
        &doc,
        "TokenCreate",
        &TokenCreate {
            name: "robot".into(),
            scope_map: Some("team-pull".into()),
            repositories: vec![rule()],
            gateways: vec![gateway()],
            status: Some("enabled".into()),
            no_passwords: true,
            expiry: Some("2027-01-31T00:00:00Z".into()),
        },
        p,
    );
    agrees(
        &doc,
        "TokenCreated",
        &TokenCreated {
            token: token(),
            passwords: vec![new_password()],
        },
        p,
    );
    agrees(
        &doc,
        "TokenUpdate",
        &TokenPatch {
            scope_map: Some("team-pull".into()),
            status: Some("disabled".into()),
        },
        p,
    );
    agrees(
        &doc,
        "CredentialsGenerate",
        &CredentialsGenerate {
            password1: true,
            password2: true,
            expiry: Some("2027-01-31T00:00:00Z".into()),
        },
        p,
    );
    agrees(
        &doc,
        "CredentialsGenerated",
        &CredentialsGenerated {
            passwords: vec![new_password()],
        },
        p,
    );
    let sync = SyncSettingsView {
        schedule: "0 2 * * *".into(),
        window: Some("PT4H".into()),
        message_ttl: "P2D".into(),
        bandwidth: Some(20_000_000),
        concurrency: Some(4),
    };
    agrees(&doc, "SyncSettings", &sync, p);
    agrees(
        &doc,
        "ConnectedRegistry",
        &ConnectedRegistryView {
            name: "factory".into(),
            mode: Mode::ReadWrite,
            parent: Some("plant".into()),
            repositories: vec!["hello-world".into()],
            sync_token: "factory-sync-token".into(),
            client_tokens: vec!["robot".into()],
            sync,
            log_level: LogLevel::Warning,
            notifications: vec!["*:*".into()],
            created_at: "2026-01-31T00:00:00Z".into(),
            activation: Activation::Active,
            connection_state: ConnectionState::Syncing,
            last_sync: Some("2026-01-31T00:00:00Z".into()),
            status_details: vec![StatusDetailView {
                code: "DISK_LOW".into(),
                description: "low".into(),
                at: "2026-01-31T00:00:00Z".into(),
                resolved_at: Some("2026-01-31T01:00:00Z".into()),
            }],
            version: Some("0.1.0".into()),
            login_server: Some("factory.example:5001".into()),
            gc: GcSettingsView {
                enabled: true,
                schedule: "30 3 * * *".into(),
            },
            last_gc: Some(LastGcView {
                at: "2026-01-31T03:31:00Z".into(),
                outcome: "finished".into(),
                blobs_removed: 12,
                bytes_freed: 1_048_576,
            }),
        },
        p,
    );
    agrees(
        &doc,
        "ConnectedRegistryCreate",
        &ConnectedRegistryCreate {
            name: "factory".into(),
            mode: Some("ReadWrite".into()),
            parent: Some("plant".into()),
            repositories: vec!["hello-world".into()],
            sync_token: Some("factory-sync-token".into()),
            client_tokens: vec!["robot".into()],
            notifications: vec!["*:*".into()],
            settings: InstanceSettings {
                sync_schedule: Some("0 2 * * *".into()),
                sync_window: Some("PT4H".into()),
                sync_message_ttl: Some("P2D".into()),
                sync_bandwidth: Some("20M".into()),
                sync_concurrency: Some(4),
                log_level: Some("Warning".into()),
                gc_enabled: Some(true),
                gc_schedule: Some("30 3 * * *".into()),
            },
        },
        p,
    );
    agrees(
        &doc,
        "ConnectedRegistryUpdate",
        &ConnectedRegistryPatch {
            add_client_tokens: vec!["robot".into()],
            remove_client_tokens: vec!["old-robot".into()],
            add_notifications: vec!["*:*".into()],
            remove_notifications: vec!["a:push".into()],
            settings: InstanceSettings {
                sync_schedule: Some("0 2 * * *".into()),
                sync_window: Some(String::new()),
                sync_message_ttl: Some("P2D".into()),
                sync_bandwidth: Some(String::new()),
                sync_concurrency: Some(8),
                log_level: Some("Debug".into()),
                gc_enabled: Some(false),
                gc_schedule: Some("0 4 * * 0".into()),
            },
        },
        p,
    );
    agrees(
        &doc,
        "Leftovers",
        &Leftovers {
            tokens: vec!["factory-sync-token".into()],
            scope_maps: vec!["factory-sync-scope-map".into()],
        },
        p,
    );
    agrees(
        &doc,
        "ConnectedRegistrySettingsRequest",
        &SettingsRequest {
            parent_protocol: Some("http".into()),
            generate_password: Some(1),
            parent_gateway_endpoint: Some("root.example:5000".into()),
        },
        p,
    );
    agrees(
        &doc,
        "ConnectedRegistrySettings",
        &SettingsView {
            connection_string: "ConnectedRegistryName=factory".into(),
            sync_token: "factory-sync-token".into(),
            password: Some(new_password()),
        },
        p,
    );
    agrees(
        &doc,
        "ConnectedRegistryPermissions",
        &PermissionsView {
            repositories: vec!["hello-world".into()],
            sync_scope_map: scope_map(),
        },
        p,
    );
    agrees(
        &doc,
        "ConnectedRegistryPermissionsUpdate",
        &PermissionsPatch {
            add: vec!["team/app".into()],
            remove: vec!["hello-world".into()],
        },
        p,
    );
    agrees(
        &doc,
        "NetworkRules",
        &NetworkRulesView {
            public_network_enabled: true,
            default_action: DefaultAction::Allow,
            ip_rules: vec!["10.0.0.0/8".into()],
        },
        p,
    );
    agrees(
        &doc,
        "IpRule",
        &IpRuleBody {
            ip_address: "10.0.0.0/8".into(),
        },
        p,
    );
    agrees(&doc, "PrivateEndpointConnection", &connection(), p);
    agrees(
        &doc,
        "Key",
        &KeyView {
            id: "3fa9c01b22de".into(),
            purpose: KeyPurpose::Tokens,
            created_at: "2026-12-01T00:00:00Z".into(),
            retired_at: Some("2026-12-04T00:00:00Z".into()),
            verifies_until: Some("2027-01-03T00:05:00Z".into()),
        },
        p,
    );
    let run = GcRunView {
        id: 7,
        started_at: "2026-01-31T03:30:00Z".into(),
        finished_at: Some("2026-01-31T03:31:00Z".into()),
        dry_run: false,
        outcome: "finished".into(),
        blobs_removed: 12,
        bytes_freed: 1_048_576,
        manifests_removed: 1,
        tags_removed: 2,
        uploads_removed: 3,
    };
    agrees(&doc, "GcRun", &run, p);
    agrees(&doc, "GcRunRequest", &GcRunRequest { dry_run: true }, p);
    agrees(
        &doc,
        "KeyRotate",
        &KeyRotate {
            purpose: "data-urls".into(),
        },
        p,
    );
    agrees(
        &doc,
        "ConnectionDecision",
        &DecisionBody {
            description: Some("approved by ops".into()),
        },
        p,
    );
    agrees(
        &doc,
        "Endpoints",
        &EndpointsView {
            login_server: LoginServerView {
                url: Some("https://registry.example".into()),
                address: Some("0.0.0.0:443".into()),
                tls: true,
                public_network_enabled: true,
                default_action: DefaultAction::Deny,
                ip_rules: 2,
            },
            private_endpoints: vec![connection()],
            data_endpoint: DataEndpointView {
                configured: true,
                enabled: true,
                url: Some("https://data.example".into()),
                address: Some("0.0.0.0:8443".into()),
                url_ttl_seconds: Some(600),
            },
        },
        p,
    );
    assert!(
        p.is_empty(),
        "the wire types and docs/openapi.json disagree:\n{}",
        p.join("\n")
    );
}

/// The strings of `values` are exactly the `enum` at `pointer` in the document.
fn same_values<T: Copy + std::fmt::Display>(doc: &Value, values: &[T], pointer: &str) {
    let documented: BTreeSet<String> = doc
        .pointer(pointer)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("docs/openapi.json has no enum at {pointer}"))
        .iter()
        .map(|v| v.as_str().expect("a string enum").to_owned())
        .collect();
    let ours: BTreeSet<String> = values.iter().map(ToString::to_string).collect();
    assert_eq!(ours, documented, "the values of {pointer}");
}

#[test]
fn every_enum_has_the_documented_values() {
    let doc = doc();
    let schemas = "/components/schemas";
    same_values(
        &doc,
        DefaultAction::ALL,
        &format!("{schemas}/Registry/properties/default_action/enum"),
    );
    same_values(
        &doc,
        DefaultAction::ALL,
        &format!("{schemas}/NetworkRules/properties/default_action/enum"),
    );
    same_values(
        &doc,
        TokenStatus::ALL,
        &format!("{schemas}/Token/properties/status/enum"),
    );
    same_values(
        &doc,
        PasswordSlot::ALL,
        &format!("{schemas}/Password/properties/name/enum"),
    );
    same_values(
        &doc,
        PasswordSlot::ALL,
        &format!("{schemas}/NewPassword/properties/name/enum"),
    );
    let connected = format!("{schemas}/ConnectedRegistry/properties");
    same_values(&doc, Mode::ALL, &format!("{connected}/mode/enum"));
    same_values(&doc, LogLevel::ALL, &format!("{connected}/log_level/enum"));
    same_values(
        &doc,
        Activation::ALL,
        &format!("{connected}/activation/enum"),
    );
    same_values(
        &doc,
        ConnectionState::ALL,
        &format!("{connected}/connection_state/enum"),
    );
    same_values(
        &doc,
        PrivateEndpointState::ALL,
        &format!("{schemas}/PrivateEndpointConnection/properties/state/enum"),
    );
    same_values(
        &doc,
        KeyPurpose::ALL,
        &format!("{schemas}/Key/properties/purpose/enum"),
    );
    same_values(
        &doc,
        KeyPurpose::ALL,
        &format!("{schemas}/KeyRotate/properties/purpose/enum"),
    );
}

/// The query parameters documented for `method path`.
fn parameters(doc: &Value, method: &str, path: &str) -> BTreeSet<String> {
    doc["paths"][path][method]["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["in"] == "query")
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect()
}

fn written(query: &impl Serialize) -> BTreeSet<String> {
    match serde_json::to_value(query).expect("a query serialises") {
        Value::Object(fields) => fields.keys().cloned().collect(),
        other => panic!("a query is an object, not {other}"),
    }
}

#[test]
fn queries_carry_the_documented_parameters() {
    let doc = doc();
    let list = ConnectedRegistryListQuery {
        parent: Some("factory".into()),
        no_children: true,
    };
    assert_eq!(
        written(&list),
        parameters(&doc, "get", "/berth/v1/connected-registries")
    );
    let delete = ConnectedRegistryDeleteQuery { cleanup: true };
    assert_eq!(
        written(&delete),
        parameters(&doc, "delete", "/berth/v1/connected-registries/{name}")
    );
    // Left out when not set, so a request carries only what was asked.
    assert!(written(&ConnectedRegistryListQuery::default()).is_empty());
    assert!(written(&ConnectedRegistryDeleteQuery::default()).is_empty());
}

fn tag_view() -> TagView {
    TagView {
        name: "v1".into(),
        digest: "sha256:aa".into(),
        media_type: "application/vnd.oci.image.index.v1+json".into(),
        size: 12_345,
        updated_at: "2026-01-31T00:00:00Z".into(),
    }
}

fn manifest_view() -> ManifestView {
    ManifestView {
        digest: "sha256:aa".into(),
        media_type: "application/vnd.oci.image.index.v1+json".into(),
        artifact_type: Some("application/vnd.example.sbom".into()),
        subject: Some("sha256:bb".into()),
        size: 12_345,
        tags: vec!["v1".into(), "latest".into()],
        created_at: "2026-01-31T00:00:00Z".into(),
        children: vec![ManifestChildView {
            digest: "sha256:cc".into(),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 500,
            platform: Some("linux/arm64/v8".into()),
        }],
    }
}

#[test]
fn repository_types_write_what_the_document_describes() {
    let doc = doc();
    let p = &mut Vec::new();
    let repository = RepositoryView {
        name: "team/app".into(),
        manifest_count: 3,
        tag_count: 2,
        blob_count: 5,
        size: 1 << 20,
        created_at: "2026-01-31T00:00:00Z".into(),
        updated_at: "2026-02-01T00:00:00Z".into(),
    };
    agrees(&doc, "Repository", &repository, p);
    agrees(
        &doc,
        "RepositoryList",
        &RepositoryList {
            repositories: vec![repository],
            next: Some("team/app".into()),
        },
        p,
    );
    agrees(&doc, "Tag", &tag_view(), p);
    agrees(
        &doc,
        "TagList",
        &TagList {
            repository: "team/app".into(),
            tags: vec![tag_view()],
            next: Some("v1".into()),
        },
        p,
    );
    agrees(&doc, "ManifestChild", &manifest_view().children[0], p);
    agrees(&doc, "Manifest", &manifest_view(), p);
    agrees(
        &doc,
        "ManifestList",
        &ManifestList {
            repository: "team/app".into(),
            manifests: vec![manifest_view()],
            next: Some("sha256:aa".into()),
        },
        p,
    );
    agrees(
        &doc,
        "RepositoryDeleted",
        &RepositoryDeleted {
            name: "team/app".into(),
            manifests_deleted: 3,
            tags_deleted: 2,
            blob_links_removed: 5,
        },
        p,
    );
    assert!(
        p.is_empty(),
        "the repository types and docs/openapi.json disagree:\n{}",
        p.join("\n")
    );
}

#[test]
fn listings_take_the_documented_page_parameters() {
    let doc = doc();
    let page = PageQuery {
        n: Some(50),
        last: Some("team/app".into()),
        orderby: Some("time_desc".into()),
    };
    for path in [
        "/berth/v1/repositories",
        "/berth/v1/repositories/{name}/_tags",
        "/berth/v1/repositories/{name}/_manifests",
    ] {
        assert_eq!(written(&page), parameters(&doc, "get", path), "{path}");
    }
    assert!(written(&PageQuery::default()).is_empty());
}

#[test]
fn import_types_write_what_the_document_describes() {
    let doc = doc();
    let p = &mut Vec::new();
    agrees(
        &doc,
        "ImportCreate",
        &ImportCreate {
            source: "registry.example.com/team/app:1.0".into(),
            images: vec!["app:1.0".into(), "app:latest".into()],
            username: Some("puller".into()),
            password: Some("secret".into()),
            include_referrers: true,
            force: true,
            insecure: true,
            ca_certificates: Some("-----BEGIN CERTIFICATE-----".into()),
        },
        p,
    );
    let progress = ImportProgress {
        manifests: 3,
        manifests_done: 3,
        referrers: 1,
        blobs: 5,
        blobs_done: 5,
        blobs_reused: 2,
        bytes: 1_048_576,
        bytes_done: 1_048_576,
    };
    agrees(&doc, "ImportProgress", &progress, p);
    agrees(
        &doc,
        "Import",
        &ImportView {
            id: "3f9c0a1b2c4d".into(),
            state: ImportState::Failed,
            source: "registry.example.com/team/app:1.0".into(),
            repository: "app".into(),
            tags: vec!["1.0".into()],
            include_referrers: true,
            force: false,
            digest: Some(format!("sha256:{}", "a".repeat(64))),
            media_type: Some("application/vnd.oci.image.index.v1+json".into()),
            progress,
            created_at: "2026-01-31T00:00:00Z".into(),
            started_at: Some("2026-01-31T00:00:01Z".into()),
            finished_at: Some("2026-01-31T00:00:09Z".into()),
            error: Some(ErrorItem {
                code: "SOURCE_UNAUTHORIZED".into(),
                message: "the source refused access".into(),
                detail: Some(json!({"source": "registry.example.com"})),
            }),
        },
        p,
    );
    assert!(
        p.is_empty(),
        "the import types and docs/openapi.json disagree:\n{}",
        p.join("\n")
    );
    same_values(
        &doc,
        ImportState::ALL,
        "/components/schemas/Import/properties/state/enum",
    );
}

#[test]
fn audit_and_webhook_types_write_what_the_document_describes() {
    let doc = doc();
    let p = &mut Vec::new();
    agrees(
        &doc,
        "AuditEntry",
        &AuditEntryView {
            id: 3,
            at: "2026-12-05T08:00:00Z".into(),
            actor: "admin".into(),
            client: "10.0.0.5".into(),
            action: "PATCH /berth/v1/registry".into(),
            resource: "/berth/v1/registry".into(),
            status: 200,
            before: Some(json!({"registry": {"anonymous_pull_enabled": false}})),
            after: Some(json!({"registry": {"anonymous_pull_enabled": true}})),
        },
        p,
    );
    agrees(
        &doc,
        "Webhook",
        &WebhookView {
            name: "hook1".into(),
            uri: "https://ci.example/hook".into(),
            actions: vec![WebhookAction::Push, WebhookAction::Delete],
            scope: Some("app:*".into()),
            headers: vec!["Authorization".into()],
            status: WebhookStatus::Enabled,
            created_at: "2026-12-05T08:00:00Z".into(),
            secret: Some("00ff".into()),
        },
        p,
    );
    agrees(
        &doc,
        "WebhookCreate",
        &WebhookCreate {
            name: "hook1".into(),
            uri: "https://ci.example/hook".into(),
            actions: vec!["push".into()],
            scope: Some("app:*".into()),
            headers: [("X-Team".to_owned(), "ops".to_owned())].into(),
            status: Some("disabled".into()),
        },
        p,
    );
    agrees(
        &doc,
        "WebhookPatch",
        &WebhookPatch {
            uri: Some("https://ci.example/hook2".into()),
            actions: Some(vec!["delete".into()]),
            scope: Some(String::new()),
            headers: Some([("X-Team".to_owned(), "dev".to_owned())].into()),
            status: Some("enabled".into()),
        },
        p,
    );
    agrees(
        &doc,
        "WebhookEvent",
        &WebhookEventView {
            id: "1b4e28ba-2fa1-11d2-883f-0016d3cca427".into(),
            action: "push".into(),
            repository: Some("hello-world".into()),
            tag: Some("v1".into()),
            digest: Some("sha256:aa".into()),
            source: Some("factory".into()),
            status: DeliveryStatus::Retrying,
            response_code: Some(503),
            error: Some("the receiver answered 503".into()),
            attempts: 2,
            at: "2026-12-05T08:00:00Z".into(),
        },
        p,
    );
    assert!(
        p.is_empty(),
        "the wire types and docs/openapi.json disagree:\n{}",
        p.join("\n")
    );
    let schemas = "/components/schemas";
    same_values(
        &doc,
        WebhookStatus::ALL,
        &format!("{schemas}/Webhook/properties/status/enum"),
    );
    same_values(
        &doc,
        WebhookAction::ALL,
        &format!("{schemas}/Webhook/properties/actions/items/enum"),
    );
    same_values(
        &doc,
        DeliveryStatus::ALL,
        &format!("{schemas}/WebhookEvent/properties/status/enum"),
    );
    let audit = AuditQuery {
        since: Some("2026-12-05T00:00:00Z".into()),
        after: Some(3),
        limit: Some(10),
    };
    assert_eq!(written(&audit), parameters(&doc, "get", "/berth/v1/audit"));
    assert!(written(&AuditQuery::default()).is_empty());
    let events = WebhookEventsQuery { limit: Some(10) };
    assert_eq!(
        written(&events),
        parameters(&doc, "get", "/berth/v1/webhooks/{name}/events")
    );
}
