//! Topic names as a broker reads them: `{persistent|non-persistent}://tenant/ns/topic`,
//! short names expanded the way Pulsar does (`t` → `persistent://public/default/t`,
//! `tenant/ns/t` → `persistent://tenant/ns/t`), and the `-partition-N` suffix that
//! names one partition of a partitioned topic.

use std::fmt;

/// A topic name the stand-in refuses, with the reason a broker would give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid topic name {name:?}: {reason}")]
pub struct TopicNameError {
    /// the name as given
    pub name: String,
    /// why it is refused
    pub reason: &'static str,
}

/// A validated, fully qualified topic name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName {
    full: String,
    namespace: String,
    partition: Option<u32>,
}

const PARTITION_SUFFIX: &str = "-partition-";

impl TopicName {
    /// Validates `name` and expands a short name, as a broker does on every command
    /// that names a topic.
    pub fn parse(name: &str) -> Result<TopicName, TopicNameError> {
        let invalid = |reason| TopicNameError {
            name: name.to_string(),
            reason,
        };
        let (domain, rest) = match name.split_once("://") {
            Some((domain, rest)) => (domain, rest.to_string()),
            None => {
                let parts: Vec<&str> = name.split('/').collect();
                match parts.len() {
                    1 => ("persistent", format!("public/default/{name}")),
                    3 => ("persistent", name.to_string()),
                    _ => return Err(invalid("a short name is either `topic` or `tenant/namespace/topic`")),
                }
            }
        };
        if domain != "persistent" && domain != "non-persistent" {
            return Err(invalid("the domain must be persistent or non-persistent"));
        }
        let mut parts = rest.splitn(3, '/');
        let (Some(tenant), Some(namespace), Some(local)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(invalid("expected tenant/namespace/topic after the domain"));
        };
        if tenant.is_empty() || namespace.is_empty() || local.is_empty() {
            return Err(invalid("tenant, namespace and topic must not be empty"));
        }
        if local.contains('/') && local.split('/').any(str::is_empty) {
            return Err(invalid("the topic part has an empty path segment"));
        }
        if rest.chars().any(|c| c.is_control() || c == ' ') {
            return Err(invalid("control characters and spaces are not allowed"));
        }
        let partition = local
            .rfind(PARTITION_SUFFIX)
            .and_then(|at| local[at + PARTITION_SUFFIX.len()..].parse::<u32>().ok());
        Ok(TopicName {
            full: format!("{domain}://{rest}"),
            namespace: format!("{tenant}/{namespace}"),
            partition,
        })
    }

    /// The fully qualified name, e.g. `persistent://public/default/t-partition-0`.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// `tenant/namespace`.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The partition index, when this names one partition of a partitioned topic.
    pub fn partition(&self) -> Option<u32> {
        self.partition
    }

    /// The partitioned topic this partition belongs to (itself when not a partition).
    pub fn base(&self) -> TopicName {
        match self.partition {
            None => self.clone(),
            Some(_) => {
                let cut = self.full.rfind(PARTITION_SUFFIX).unwrap_or(self.full.len());
                TopicName {
                    full: self.full[..cut].to_string(),
                    namespace: self.namespace.clone(),
                    partition: None,
                }
            }
        }
    }

    /// The name of partition `index` of this (partitioned) topic.
    pub fn partition_name(&self, index: u32) -> TopicName {
        TopicName {
            full: format!("{}{PARTITION_SUFFIX}{index}", self.full),
            namespace: self.namespace.clone(),
            partition: Some(index),
        }
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_short_names_like_pulsar() {
        assert_eq!(
            TopicName::parse("orders").unwrap().as_str(),
            "persistent://public/default/orders"
        );
        assert_eq!(
            TopicName::parse("acme/cdc/orders").unwrap().as_str(),
            "persistent://acme/cdc/orders"
        );
        let full = TopicName::parse("non-persistent://acme/cdc/orders").unwrap();
        assert_eq!(full.as_str(), "non-persistent://acme/cdc/orders");
        assert_eq!(full.namespace(), "acme/cdc");
    }

    #[test]
    fn recognises_partitions() {
        let p = TopicName::parse("orders-partition-3").unwrap();
        assert_eq!(p.partition(), Some(3));
        assert_eq!(p.base().as_str(), "persistent://public/default/orders");
        assert_eq!(p.base().partition_name(3), p);
        assert_eq!(TopicName::parse("orders-partition-x").unwrap().partition(), None);
    }

    #[test]
    fn refuses_malformed_names() {
        for bad in [
            "",
            "a/b",
            "a/b/c/d/",
            "kafka://a/b/c",
            "persistent://a/b",
            "persistent:///b/c",
            "persistent://a//c",
            "persistent://a/b/",
            "has space",
        ] {
            assert!(TopicName::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
