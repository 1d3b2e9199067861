//! Consumer views: a view `(container, name)` maps to one physical table.
//! The pure half of a remap: which columns the view exposes after it, the
//! check that the target has them all, and whether the container can
//! replace the view in place or must drop and create it (in the same
//! transaction).

use crate::hydrations::HydrationId;
use crate::time::Millis;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    #[error("table `{target}` does not exist in the container")]
    TargetMissing { target: String },
    #[error("view `{view}` would expose column `{column}`, which table `{target}` does not have; declare the view's new columns to drop it on purpose")]
    MissingColumn {
        view: String,
        column: String,
        target: String,
    },
    /// Worth retrying: the container could not be reached, timed out, or
    /// could not take a lock in time.
    #[error("the container could not be reached or could not make the change now: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Unsupported(String),
    /// The container refused the change itself (a column's type would
    /// change, the view is a table, a schema is missing...): retrying
    /// changes nothing until someone changes the container.
    #[error("the container refused the change: {0}")]
    Refused(String),
    /// Every read of a view that selects from itself fails.
    #[error("view `{view}` cannot be its own target")]
    SelfTarget { view: String },
    /// A view or target in a system schema.
    #[error("{0}")]
    SystemSchema(String),
    /// A view or target in a schema its container does not allow.
    #[error("{0}")]
    NotAllowed(String),
}

/// Refuse a view or target name (`schema.name` or `name`) in a system
/// schema: `pg_catalog`, `information_schema`, or any `pg_*` (`pg_toast`,
/// `pg_temp_*`...). A view there could expose what only the database
/// itself should read (`pg_catalog.pg_authid` holds password hashes).
/// An unqualified name is in the container's default schema.
pub fn check_schema(name: &str) -> Result<(), String> {
    let Some((schema, _)) = name.split_once('.') else {
        return Ok(());
    };
    // Compared without case: refusing `"PG_CATALOG"` too is harmless.
    let schema = schema.to_ascii_lowercase();
    if schema == "information_schema" || schema.starts_with("pg_") {
        Err(format!(
            "`{name}` is in system schema `{schema}`: views and their targets stay out of `pg_catalog`, `information_schema` and `pg_*`"
        ))
    } else {
        Ok(())
    }
}

/// `name` as `schema.name`, an unqualified name being in `schema` (the
/// container's [`default_schema`](crate::containers::ContainerKind::default_schema)).
pub fn qualified(name: &str, schema: &str) -> String {
    if name.contains('.') {
        name.to_owned()
    } else {
        format!("{schema}.{name}")
    }
}

/// The checks a remap passes before the container is asked anything:
/// neither name in a system schema, and the view not its own target.
/// `schema` is where unqualified names are (PostgreSQL: `public`; Glue:
/// the container's database), so that `v` and `public.v` are one view.
pub fn check_request(view: &str, target: &str, schema: &str) -> Result<(), ViewError> {
    check_schema(view).map_err(ViewError::SystemSchema)?;
    check_schema(target).map_err(ViewError::SystemSchema)?;
    if qualified(view, schema) == qualified(target, schema) {
        return Err(ViewError::SelfTarget {
            view: view.to_owned(),
        });
    }
    Ok(())
}

/// How one view is to be switched, as planned from what the container holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub view: String,
    pub target: String,
    /// The columns it exposes after the switch, in order.
    pub columns: Vec<String>,
    /// The columns it exposed before (`None`: the view is new).
    pub previous_columns: Option<Vec<String>>,
    /// `CREATE OR REPLACE VIEW` keeps the existing columns, in order, and
    /// may only add after them; anything else drops the view and creates it.
    pub drop_first: bool,
}

/// Plan switching `view` to `target`: it exposes `declared` when given,
/// otherwise what it exposes today (or, for a new view, every column of
/// the target). A column the target lacks refuses the whole remap, and
/// so does anything [`check_request`] refuses.
pub fn plan(
    view: &str,
    target: &str,
    schema: &str,
    declared: Option<&[String]>,
    view_columns: Option<&[String]>,
    target_columns: Option<&[String]>,
) -> Result<Plan, ViewError> {
    check_request(view, target, schema)?;
    let Some(target_columns) = target_columns else {
        return Err(ViewError::TargetMissing {
            target: target.to_owned(),
        });
    };
    let columns: Vec<String> = declared.or(view_columns).unwrap_or(target_columns).to_vec();
    if let Some(missing) = columns.iter().find(|c| !target_columns.contains(c)) {
        return Err(ViewError::MissingColumn {
            view: view.to_owned(),
            column: missing.clone(),
            target: target.to_owned(),
        });
    }
    let drop_first = view_columns.is_some_and(|old| !columns.starts_with(old));
    Ok(Plan {
        view: view.to_owned(),
        target: target.to_owned(),
        columns,
        previous_columns: view_columns.map(<[String]>::to_vec),
        drop_first,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemapKind {
    /// A live hydration switched it (automatic), or an operator did.
    Remap,
    /// Back to the mapping before the last change.
    Rollback,
}

/// One change of a view's mapping, as history keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remap {
    pub view: String,
    pub kind: RemapKind,
    pub from_target: Option<String>,
    pub from_columns: Option<Vec<String>>,
    pub to_target: String,
    pub columns: Vec<String>,
    pub hydration_id: Option<HydrationId>,
    pub actor: Option<String>,
    pub reason: String,
    pub at: Millis,
}

/// What a rollback of `last` switches to: the mapping before it.
pub fn rollback_of(last: &Remap) -> Option<(String, Option<Vec<String>>)> {
    last.from_target
        .clone()
        .map(|target| (target, last.from_columns.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(c: &[&str]) -> Vec<String> {
        c.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_view_keeps_its_columns_unless_new_ones_are_declared() {
        let v1 = cols(&["id", "name", "legacy"]);
        let v2 = cols(&["id", "name", "email"]);
        // v2 lacks `legacy`: refused unless the new list is declared.
        let refused = plan("orders", "t_v2", "public", None, Some(&v1), Some(&v2));
        assert!(
            matches!(refused, Err(ViewError::MissingColumn { ref column, .. }) if column == "legacy")
        );
        let declared = cols(&["id", "name", "email"]);
        let p = plan(
            "orders",
            "t_v2",
            "public",
            Some(&declared),
            Some(&v1),
            Some(&v2),
        )
        .unwrap();
        assert_eq!(p.columns, declared);
        assert!(p.drop_first, "a dropped column needs DROP + CREATE");
        // Only adding after the existing columns replaces in place.
        let wider = cols(&["id", "name", "legacy", "email"]);
        let p = plan(
            "orders",
            "t_v3",
            "public",
            Some(&wider),
            Some(&v1),
            Some(&wider),
        )
        .unwrap();
        assert!(!p.drop_first);
        // A new view exposes the whole target.
        let p = plan("fresh", "t_v2", "public", None, None, Some(&v2)).unwrap();
        assert_eq!((p.columns, p.drop_first), (v2.clone(), false));
        assert!(matches!(
            plan("orders", "nowhere", "public", None, Some(&v1), None),
            Err(ViewError::TargetMissing { .. })
        ));
    }

    #[test]
    fn a_view_is_never_its_own_target() {
        let c = cols(&["id"]);
        for (view, target) in [
            ("v", "v"),
            ("v", "public.v"),
            ("public.v", "v"),
            ("s.v", "s.v"),
        ] {
            assert!(
                matches!(
                    plan(view, target, "public", None, Some(&c), Some(&c)),
                    Err(ViewError::SelfTarget { .. })
                ),
                "{view} -> {target}"
            );
        }
        // In a Glue container unqualified names are in its database.
        assert!(check_request("v", "analytics.v", "analytics").is_err());
        assert!(check_request("v", "other.v", "analytics").is_ok());
        assert!(check_request("v", "s.v", "public").is_ok());
    }

    #[test]
    fn views_and_targets_stay_out_of_system_schemas() {
        let c = cols(&["rolname", "rolpassword"]);
        for name in [
            "pg_catalog.pg_authid",
            "information_schema.tables",
            "pg_toast.pg_toast_1",
            "pg_temp_3.t",
            "PG_CATALOG.pg_authid",
        ] {
            assert!(check_schema(name).is_err(), "{name}");
            assert!(matches!(
                plan("v", name, "public", None, None, Some(&c)),
                Err(ViewError::SystemSchema(_))
            ));
            assert!(matches!(
                plan(name, "t", "public", None, None, Some(&c)),
                Err(ViewError::SystemSchema(_))
            ));
        }
        for name in ["orders", "public.orders", "pgx.orders", "pg_orders"] {
            assert!(check_schema(name).is_ok(), "{name}");
        }
    }
}

/// A consumer view as sluice holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    pub container: crate::containers::ContainerName,
    pub name: String,
    pub target: String,
    pub columns: Vec<String>,
    pub auto_remap: bool,
    /// The hydration whose target it maps to, if a hydration mapped it.
    pub hydration_id: Option<HydrationId>,
    pub updated_at: Millis,
}

/// What a remap asks of a container for one view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewRequest {
    pub view: String,
    pub target: String,
    /// The columns it is to expose (`None`: what it exposes today).
    pub columns: Option<Vec<String>>,
}

pub type ViewFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, ViewError>> + Send + 'a>>;

/// Where views live: a container switches all the views of one remap at
/// once (PostgreSQL: one transaction), checking each with [`plan`] against
/// what it holds at that moment, or switches none.
pub trait ViewPort: Send + Sync + 'static {
    fn remap<'a>(
        &'a self,
        container: &'a crate::containers::Container,
        requests: &'a [ViewRequest],
    ) -> ViewFuture<'a, Vec<Plan>>;
}
