//! Manifests: what a registry must understand of them to store them safely.
//!
//! The registry stores and serves the exact bytes a client pushed; this module only reads
//! them to validate their shape and to learn what they reference (blobs, child manifests,
//! a `subject`), which is what the storage layer needs to keep "nothing half-written".

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::digest::Digest;

/// The manifest media types Berth stores.
pub mod media_type {
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// Docker image manifest, schema 2.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker manifest list.
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    /// Docker schema 1, which Berth refuses.
    pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
    /// Signed Docker schema 1, which Berth refuses.
    pub const DOCKER_SCHEMA1_SIGNED: &str =
        "application/vnd.docker.distribution.manifest.v1+prettyjws";
    /// The OCI empty descriptor's media type (`{}`), used as the config of artifacts.
    pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
}

/// Whether a manifest lists layers (an image or artifact) or other manifests (an index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// OCI image manifest or Docker schema 2 manifest.
    Image,
    /// OCI image index or Docker manifest list.
    Index,
}

/// A content descriptor as it appears inside a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// The referenced content's media type.
    pub media_type: String,
    /// The referenced content's digest.
    pub digest: Digest,
    /// The referenced content's size in bytes.
    pub size: u64,
    /// The descriptor's `artifactType`, if any.
    pub artifact_type: Option<String>,
    /// Download URLs of a non-distributable ("foreign") layer; such layers are not stored.
    pub urls: Vec<String>,
    /// The platform an index names for a child manifest, when it names one as strings.
    pub platform: Option<Platform>,
}

/// The platform an index gives a child manifest (`os`, `architecture`, `variant`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Platform {
    /// `linux`, `windows`, ...
    pub os: String,
    /// `amd64`, `arm64`, ...
    pub architecture: String,
    /// `v8`, `v7`, ..., if any.
    #[serde(default)]
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    /// `os/architecture[/variant]`, as `docker` writes it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = self.variant.as_deref().filter(|v| !v.is_empty()) {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// A parsed and validated manifest. The original bytes are kept by the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The manifest's media type (from its `mediaType` field or the request's `Content-Type`).
    pub media_type: String,
    /// Image or index.
    pub kind: ManifestKind,
    /// `config` of an image manifest.
    pub config: Option<Descriptor>,
    /// `layers` of an image manifest, or `manifests` of an index.
    pub children: Vec<Descriptor>,
    /// The manifest this one refers to (signatures, SBOMs, attestations).
    pub subject: Option<Descriptor>,
    /// The manifest's own `artifactType`.
    pub artifact_type: Option<String>,
    /// The manifest's `annotations`, as they are.
    pub annotations: Option<BTreeMap<String, String>>,
}

/// Why manifest bytes are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The bytes do not form a manifest this registry accepts.
    #[error("manifest invalid: {0}")]
    Invalid(String),
    /// A well-formed manifest of a kind Berth does not store (Docker schema 1).
    #[error("manifest media type `{0}` is not supported; push an OCI or Docker schema 2 manifest")]
    Unsupported(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<serde_json::Value>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<RawDescriptor>,
    layers: Option<Vec<RawDescriptor>>,
    manifests: Option<Vec<RawDescriptor>>,
    subject: Option<RawDescriptor>,
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: Option<String>,
    digest: Option<String>,
    size: Option<i64>,
    artifact_type: Option<String>,
    #[serde(default)]
    urls: Vec<String>,
    /// Kept as it is: a platform is informative only, so one of another shape than the
    /// spec's is ignored rather than refused (as it was before it was read at all).
    platform: Option<serde_json::Value>,
}

impl RawDescriptor {
    fn validate(self, field: &str) -> Result<Descriptor, ManifestError> {
        let invalid = |what: String| ManifestError::Invalid(format!("`{field}`: {what}"));
        let media_type = self
            .media_type
            .filter(|m| !m.is_empty())
            .ok_or_else(|| invalid("descriptor has no `mediaType`".into()))?;
        let digest = self
            .digest
            .ok_or_else(|| invalid("descriptor has no `digest`".into()))?;
        let digest = digest
            .parse::<Digest>()
            .map_err(|e| invalid(e.to_string()))?;
        let size = self
            .size
            .ok_or_else(|| invalid("descriptor has no `size`".into()))?;
        let size = u64::try_from(size).map_err(|_| invalid(format!("negative size {size}")))?;
        Ok(Descriptor {
            media_type,
            digest,
            size,
            artifact_type: self.artifact_type,
            urls: self.urls,
            platform: self
                .platform
                .and_then(|p| serde_json::from_value::<Platform>(p).ok()),
        })
    }
}

impl Manifest {
    /// Parses and validates manifest bytes. `content_type` is the request's `Content-Type`,
    /// if any; when the manifest carries a `mediaType` too, they must agree.
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, ManifestError> {
        strict::check(bytes)?;
        let raw: RawManifest = serde_json::from_slice(bytes)
            .map_err(|e| ManifestError::Invalid(format!("not a JSON manifest: {e}")))?;
        let content_type = content_type
            .map(|c| c.split(';').next().unwrap_or("").trim())
            .filter(|c| !c.is_empty());

        let media_type = match (&raw.media_type, content_type) {
            (Some(body), Some(header)) if body != header && !is_generic_json(header) => {
                return Err(ManifestError::Invalid(format!(
                    "`mediaType` is `{body}` but the request's Content-Type is `{header}`"
                )));
            }
            (Some(body), _) => body.clone(),
            (None, Some(header)) if !is_generic_json(header) => header.to_owned(),
            (None, _) if raw.manifests.is_some() => media_type::OCI_INDEX.to_owned(),
            (None, _) => media_type::OCI_MANIFEST.to_owned(),
        };

        if media_type == media_type::DOCKER_SCHEMA1
            || media_type == media_type::DOCKER_SCHEMA1_SIGNED
        {
            return Err(ManifestError::Unsupported(media_type));
        }
        match raw.schema_version.as_ref().and_then(|v| v.as_u64()) {
            Some(2) => {}
            Some(1) => {
                return Err(ManifestError::Unsupported(
                    media_type::DOCKER_SCHEMA1.to_owned(),
                ));
            }
            _ => return Err(ManifestError::Invalid("`schemaVersion` must be 2".into())),
        }

        let kind = match media_type.as_str() {
            media_type::OCI_MANIFEST | media_type::DOCKER_MANIFEST => ManifestKind::Image,
            media_type::OCI_INDEX | media_type::DOCKER_LIST => ManifestKind::Index,
            other => {
                return Err(ManifestError::Invalid(format!(
                    "unknown manifest media type `{other}`; expected an OCI image manifest or index, \
                     or a Docker schema 2 manifest or manifest list"
                )));
            }
        };

        let subject = raw.subject.map(|s| s.validate("subject")).transpose()?;
        let (config, children) = match kind {
            ManifestKind::Image => {
                if raw.manifests.is_some() {
                    return Err(ManifestError::Invalid(
                        "an image manifest cannot have `manifests`".into(),
                    ));
                }
                let config = raw
                    .config
                    .ok_or_else(|| {
                        ManifestError::Invalid("an image manifest needs a `config`".into())
                    })?
                    .validate("config")?;
                let layers = raw
                    .layers
                    .unwrap_or_default()
                    .into_iter()
                    .map(|l| l.validate("layers"))
                    .collect::<Result<Vec<_>, _>>()?;
                (Some(config), layers)
            }
            ManifestKind::Index => {
                if raw.config.is_some() || raw.layers.is_some() {
                    return Err(ManifestError::Invalid(
                        "an index cannot have `config` or `layers`".into(),
                    ));
                }
                let manifests = raw
                    .manifests
                    .ok_or_else(|| ManifestError::Invalid("an index needs `manifests`".into()))?
                    .into_iter()
                    .map(|m| m.validate("manifests"))
                    .collect::<Result<Vec<_>, _>>()?;
                (None, manifests)
            }
        };

        Ok(Manifest {
            media_type,
            kind,
            config,
            children,
            subject,
            artifact_type: raw.artifact_type,
            annotations: raw.annotations,
        })
    }

    /// Blobs that must exist in the repository before this manifest may: the config and every
    /// layer that is not a foreign (URL-only) layer.
    pub fn required_blobs(&self) -> impl Iterator<Item = &Descriptor> {
        let layers = match self.kind {
            ManifestKind::Image => self.children.as_slice(),
            ManifestKind::Index => &[],
        };
        self.config
            .iter()
            .chain(layers.iter().filter(|l| l.urls.is_empty()))
    }

    /// Child manifests that must exist in the repository before this index may.
    pub fn required_manifests(&self) -> &[Descriptor] {
        match self.kind {
            ManifestKind::Image => &[],
            ManifestKind::Index => &self.children,
        }
    }

    /// The artifact type the referrers API reports: `artifactType`, else the config's media type.
    pub fn effective_artifact_type(&self) -> Option<&str> {
        self.artifact_type
            .as_deref()
            .or(self.config.as_ref().map(|c| c.media_type.as_str()))
    }
}

/// Reading a manifest the way clients read it.
///
/// Go's `encoding/json`, which docker, containerd and skopeo use, matches object keys to
/// struct fields case-insensitively (with Unicode folding: `ſ` is `s`, `K` is `k`) and
/// lets the last of duplicate keys win, while serde matches exactly. A manifest whose keys
/// are read differently by the two could reference, for clients, blobs the registry never
/// checked. So any duplicate key, and any key that folds to a known field without being it,
/// is refused; and the whole document must be UTF-8, unknown fields included (serde skips
/// them unchecked).
mod strict {
    use std::collections::HashSet;
    use std::fmt;

    use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

    use super::ManifestError;

    const MANIFEST_FIELDS: &[&str] = &[
        "schemaVersion",
        "mediaType",
        "artifactType",
        "config",
        "layers",
        "manifests",
        "subject",
        "annotations",
    ];
    const DESCRIPTOR_FIELDS: &[&str] = &[
        "mediaType",
        "digest",
        "size",
        "urls",
        "annotations",
        "data",
        "artifactType",
        "platform",
    ];
    const PLATFORM_FIELDS: &[&str] = &[
        "architecture",
        "os",
        "os.version",
        "os.features",
        "variant",
        "features",
    ];

    /// Where in a manifest a value sits, which says which keys are known there.
    #[derive(Clone, Copy)]
    enum Place {
        Manifest,
        Descriptor,
        Descriptors,
        Platform,
        Other,
    }

    impl Place {
        fn fields(self) -> &'static [&'static str] {
            match self {
                Place::Manifest => MANIFEST_FIELDS,
                Place::Descriptor => DESCRIPTOR_FIELDS,
                Place::Platform => PLATFORM_FIELDS,
                Place::Descriptors | Place::Other => &[],
            }
        }

        fn child(self, key: &str) -> Place {
            match (self, key) {
                (Place::Manifest, "config" | "subject") => Place::Descriptor,
                (Place::Manifest, "layers" | "manifests") => Place::Descriptors,
                (Place::Descriptor, "platform") => Place::Platform,
                _ => Place::Other,
            }
        }
    }

    /// A key as Go compares it to field names.
    fn fold(key: &str) -> String {
        key.chars()
            .flat_map(char::to_uppercase)
            .flat_map(char::to_lowercase)
            .collect()
    }

    /// Checks `bytes` as described in the module's documentation.
    pub(super) fn check(bytes: &[u8]) -> Result<(), ManifestError> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            ManifestError::Invalid(format!("the manifest is not valid UTF-8 ({e})"))
        })?;
        let mut de = serde_json::Deserializer::from_str(text);
        Walk(Place::Manifest)
            .deserialize(&mut de)
            .and_then(|()| de.end())
            .map_err(|e| ManifestError::Invalid(format!("not a JSON manifest: {e}")))
    }

    struct Walk(Place);

    impl<'de> DeserializeSeed<'de> for Walk {
        type Value = ();

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Walk {
        type Value = ();

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON value")
        }

        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let item = match self.0 {
                Place::Descriptors => Place::Descriptor,
                _ => Place::Other,
            };
            while seq.next_element_seed(Walk(item))?.is_some() {}
            Ok(())
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = HashSet::new();
            let known = self.0.fields();
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if !known.contains(&key.as_ref()) {
                    let folded = fold(&key);
                    if let Some(field) = known.iter().find(|f| fold(f) == folded) {
                        return Err(de::Error::custom(format!(
                            "key `{key}` differs from the field `{field}` only in case"
                        )));
                    }
                }
                map.next_value_seed(Walk(self.0.child(&key)))?;
                if !seen.insert(key.clone()) {
                    return Err(de::Error::custom(format!("duplicate key `{key}`")));
                }
            }
            Ok(())
        }
    }
}

/// Whether a `Content-Type` carries no manifest type (clients that send `application/json`).
fn is_generic_json(content_type: &str) -> bool {
    content_type == "application/json" || content_type == "application/octet-stream"
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn image(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D1}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{D2}","size":10}}]{extra}}}"#,
            media_type::OCI_MANIFEST
        )
    }

    #[test]
    fn image_manifest_references_config_and_layers() {
        let m = Manifest::parse(image("").as_bytes(), Some(media_type::OCI_MANIFEST)).unwrap();
        assert_eq!(m.kind, ManifestKind::Image);
        let blobs: Vec<String> = m.required_blobs().map(|d| d.digest.to_string()).collect();
        assert_eq!(blobs, [D1, D2]);
        assert!(m.required_manifests().is_empty());
        assert_eq!(
            m.effective_artifact_type(),
            Some("application/vnd.oci.image.config.v1+json")
        );
    }

    #[test]
    fn subject_and_artifact_type() {
        let extra = format!(
            r#","artifactType":"application/x-sig","subject":{{"mediaType":"{}","digest":"{D1}","size":5}}"#,
            media_type::OCI_MANIFEST
        );
        let m = Manifest::parse(image(&extra).as_bytes(), None).unwrap();
        assert_eq!(m.subject.as_ref().unwrap().digest.to_string(), D1);
        assert_eq!(m.effective_artifact_type(), Some("application/x-sig"));
    }

    #[test]
    fn index_references_children() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{D1}","size":3,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#,
            media_type::OCI_INDEX,
            media_type::OCI_MANIFEST
        );
        let m = Manifest::parse(body.as_bytes(), None).unwrap();
        assert_eq!(m.kind, ManifestKind::Index);
        assert_eq!(m.required_manifests().len(), 1);
        assert_eq!(m.required_blobs().count(), 0);
        let platform = m.children[0].platform.as_ref().unwrap();
        assert_eq!(platform.to_string(), "linux/amd64");
    }

    #[test]
    fn a_platform_of_another_shape_is_ignored_not_refused() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{D1}","size":3,"platform":{{"os":7}}}},{{"mediaType":"{}","digest":"{D2}","size":3,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}}]}}"#,
            media_type::OCI_INDEX,
            media_type::OCI_MANIFEST,
            media_type::OCI_MANIFEST
        );
        let m = Manifest::parse(body.as_bytes(), None).unwrap();
        assert_eq!(m.children[0].platform, None);
        let platform = m.children[1].platform.as_ref().unwrap();
        assert_eq!(platform.to_string(), "linux/arm64/v8");
    }

    #[test]
    fn content_type_must_agree() {
        let err =
            Manifest::parse(image("").as_bytes(), Some(media_type::DOCKER_MANIFEST)).unwrap_err();
        assert!(matches!(err, ManifestError::Invalid(_)), "{err}");
    }

    #[test]
    fn media_type_from_content_type_when_body_has_none() {
        let body = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"a/b","digest":"{D1}","size":2}},"layers":[]}}"#
        );
        let m = Manifest::parse(body.as_bytes(), Some(media_type::DOCKER_MANIFEST)).unwrap();
        assert_eq!(m.media_type, media_type::DOCKER_MANIFEST);
    }

    #[test]
    fn foreign_layers_are_not_required() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"a/b","digest":"{D1}","size":2}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"{D2}","size":1,"urls":["https://example.invalid/l"]}}]}}"#,
            media_type::DOCKER_MANIFEST
        );
        let m = Manifest::parse(body.as_bytes(), None).unwrap();
        assert_eq!(m.required_blobs().count(), 1);
    }

    #[test]
    fn refuses_keys_a_go_client_would_read_differently() {
        let extra = format!(
            r#","Layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{D1}","size":1}}]"#
        );
        for bad in [
            image(&extra),
            // Duplicates, at the top, in a descriptor and in annotations.
            image(r#","layers":[]"#),
            image(r#","annotations":{"a":"1","a":"2"}"#),
            image(r#","MediaType":"application/vnd.oci.image.index.v1+json""#),
            image(
                r#","subject":{"mediaType":"a/b","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":1,"Digest":"x"}"#,
            ),
            // Go folds the Kelvin sign and the long s too.
            image(r#","ſchemaVersion":2"#),
        ] {
            let err = Manifest::parse(bad.as_bytes(), None).unwrap_err();
            assert!(matches!(err, ManifestError::Invalid(_)), "{bad}: {err}");
        }
        // Unknown keys that match no field in any case stay allowed.
        Manifest::parse(image(r#","x-extra":{"Layers":1}"#).as_bytes(), None).unwrap();
    }

    #[test]
    fn refuses_invalid_utf8_anywhere() {
        let mut bytes = image(r#","x-extra":"AB""#).into_bytes();
        let at = bytes.windows(2).position(|w| w == b"AB").unwrap();
        bytes[at] = 0xff;
        let err = Manifest::parse(&bytes, None).unwrap_err();
        assert!(err.to_string().contains("UTF-8"), "{err}");
    }

    #[test]
    fn refuses_garbage() {
        for bad in [
            "",
            "not json",
            "[]",
            r#"{"schemaVersion":3}"#,
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#,
            r#"{"schemaVersion":2,"mediaType":"text/plain","config":{}}"#,
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"x","digest":"sha256:zz","size":1}]}"#,
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"x","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":-1}]}"#,
        ] {
            assert!(Manifest::parse(bad.as_bytes(), None).is_err(), "{bad:?}");
        }
        let schema1 = r#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        assert!(matches!(
            Manifest::parse(schema1.as_bytes(), None),
            Err(ManifestError::Unsupported(_))
        ));
    }
}
