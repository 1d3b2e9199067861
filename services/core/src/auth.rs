//! Who may do what: roles, the permissions they grant, and scopes (table
//! name prefixes) that narrow a token to part of the platform. The whole
//! matrix is here, in one place, so it can be read and tested at once.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Glue jobs: take, heartbeat and release leases; open and commit batches.
    Job,
    /// Schedulers: read tables and their queues (later: compactions, job runs).
    Scheduler,
    /// Operators: read everything, revoke leases, rewind and reset bookmarks.
    Operator,
    /// Administrators: everything, including tables' and streams' settings.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Job, Role::Scheduler, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Job => "job",
            Role::Scheduler => "scheduler",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn allows(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => true,
            Role::Operator => matches!(
                permission,
                ReadTables
                    | RefreshTables
                    | ReadContainers
                    | ReadHydrations
                    | CancelHydrations
                    | ManageViews
                    | ReadLeases
                    | ReadEvents
                    | RevokeLeases
                    | ReadStreams
                    | RewindStreams
                    | ReadJobs
                    | StartRuns
                    | OperateRuns
                    | RequestCompactions
            ),
            Role::Scheduler => matches!(
                permission,
                ReadTables
                    | RefreshTables
                    | ReadContainers
                    | ReadHydrations
                    | ReadLeases
                    | ReadStreams
                    | ReadJobs
                    | StartRuns
                    | RequestCompactions
            ),
            Role::Job => matches!(
                permission,
                ReadTables
                    | RefreshTables
                    | ReadContainers
                    | ReadHydrations
                    | RunHydrations
                    | ReadLeases
                    | UseLeases
                    | ReadStreams
                    | UseBatches
                    | ReadJobs
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// List tables, read a table and its holders and waiters.
    ReadTables,
    /// Register tables and change their settings.
    ManageTables,
    /// Re-read a table's metadata from its catalog (harmless: it only reads).
    RefreshTables,
    /// List and read consumer data containers (never their secrets).
    ReadContainers,
    /// Register containers and change them.
    ManageContainers,
    /// List and read hydrations with their progress and lag.
    ReadHydrations,
    /// Create hydrations and report their progress (under their lease).
    RunHydrations,
    /// Cancel anyone's hydration.
    CancelHydrations,
    /// Remap and roll back consumer views, turn automatic remaps on or off.
    ManageViews,
    /// Read a lease by id.
    ReadLeases,
    /// Acquire, heartbeat and release leases.
    UseLeases,
    /// End someone else's lease.
    RevokeLeases,
    /// Read the event log.
    ReadEvents,
    /// List streams, read a stream, its bookmark, history and batches.
    ReadStreams,
    /// Register streams and change their settings.
    ManageStreams,
    /// Open, heartbeat, commit and fail batches.
    UseBatches,
    /// Rewind or reset a stream's bookmark.
    RewindStreams,
    /// Read job definitions, runs and compactions.
    ReadJobs,
    /// Define jobs and change them.
    ManageJobs,
    /// Start a run of a job on demand.
    StartRuns,
    /// Cancel runs; retry or discard dead-lettered ones.
    OperateRuns,
    /// Ask for a table to be compacted.
    RequestCompactions,
}

/// The caller of a request, as its token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    /// Table name prefixes the caller is limited to; empty: every table.
    pub scopes: Vec<String>,
}

impl Principal {
    /// Whoever calls a server that runs without authentication.
    pub fn anonymous() -> Principal {
        Principal {
            name: "anonymous".into(),
            role: Role::Admin,
            scopes: Vec::new(),
        }
    }

    pub fn may(&self, permission: Permission) -> bool {
        self.role.allows(permission)
    }

    pub fn sees(&self, table: &str) -> bool {
        self.scopes.is_empty()
            || self
                .scopes
                .iter()
                .any(|prefix| table.starts_with(prefix.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_admins_manage_tables_and_only_operators_and_admins_revoke() {
        for role in Role::ALL {
            assert_eq!(role.allows(Permission::ManageTables), role == Role::Admin);
            assert_eq!(
                role.allows(Permission::RevokeLeases),
                matches!(role, Role::Operator | Role::Admin)
            );
            assert!(role.allows(Permission::ReadTables));
        }
        assert!(Role::Job.allows(Permission::UseLeases));
        assert!(!Role::Operator.allows(Permission::UseLeases));
        assert!(!Role::Scheduler.allows(Permission::UseLeases));
        assert!(!Role::Job.allows(Permission::ReadEvents));
    }

    #[test]
    fn admins_define_jobs_schedulers_compact_operators_handle_dead_letters() {
        for role in Role::ALL {
            assert!(role.allows(Permission::ReadJobs));
            assert_eq!(role.allows(Permission::ManageJobs), role == Role::Admin);
            assert_eq!(
                role.allows(Permission::RequestCompactions),
                role != Role::Job
            );
            assert_eq!(
                role.allows(Permission::OperateRuns),
                matches!(role, Role::Operator | Role::Admin)
            );
        }
    }

    #[test]
    fn jobs_commit_batches_operators_rewind_admins_register_streams() {
        for role in Role::ALL {
            assert!(role.allows(Permission::ReadStreams));
            assert_eq!(role.allows(Permission::ManageStreams), role == Role::Admin);
            assert_eq!(
                role.allows(Permission::UseBatches),
                matches!(role, Role::Job | Role::Admin)
            );
            assert_eq!(
                role.allows(Permission::RewindStreams),
                matches!(role, Role::Operator | Role::Admin)
            );
        }
    }

    #[test]
    fn scopes_are_name_prefixes() {
        let p = Principal {
            name: "team".into(),
            role: Role::Job,
            scopes: vec!["sales.".into(), "crm.raw".into()],
        };
        assert!(p.sees("sales.orders"));
        assert!(p.sees("crm.raw_contacts"));
        assert!(!p.sees("salesx.orders"));
        assert!(!p.sees("hr.people"));
        assert!(Principal::anonymous().sees("anything.at_all"));
    }
}
