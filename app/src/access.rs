//! Who may do what: the one place authorization is decided. The server asks
//! `authorize` before every state change; the UI asks the same function to
//! hide what the server would refuse and to say why. Reading is open to every
//! signed-in user (the `viewer` role is the least anyone holds).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// Who is making a request. The auth gate in the server decides this for every
/// request from its session; without one the caller is `anonymous`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub authenticated: bool,
    /// What the user may do beyond reading (`authorize` decides).
    pub grants: Vec<Grant>,
    /// The service token the request came with, by name: `name` is then
    /// the token's owner, and `grants` the token's own (never more than the
    /// owner's).
    #[serde(default)]
    pub token: Option<String>,
}

impl User {
    pub fn anonymous() -> Self {
        Self {
            name: "anonymous".into(),
            authenticated: false,
            grants: Vec::new(),
            token: None,
        }
    }

    /// Who did it, as the audit log names them: the person, or a token on
    /// behalf of its owner.
    pub fn actor(&self) -> String {
        match &self.token {
            Some(token) => format!("{} (token {token})", self.name),
            None => self.name.clone(),
        }
    }

    /// Whether `action` would be allowed (the server decides again on the request).
    pub fn may(&self, action: Action<'_>) -> bool {
        authorize(self, action).is_ok()
    }
}

/// Built-in roles; each includes everything the ones before it may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Launches trainings and cancels their own; edits the registry (not
    /// what a deployment serves by).
    Trainer,
    /// Requests promotions (promotes where no approval is required), rolls back.
    Deployer,
    /// Approves or rejects other people's promotion requests.
    Approver,
    /// Everything, including accounts and anyone's launches.
    Admin,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Viewer,
        Role::Trainer,
        Role::Deployer,
        Role::Approver,
        Role::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Trainer => "trainer",
            Role::Deployer => "deployer",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == text)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role, limited to the projects and models whose names match one of
/// `scope`'s patterns (`*` matches any run of characters); an empty scope
/// covers everything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Grant {
    pub role: Role,
    #[serde(default)]
    pub scope: Vec<String>,
}

impl Grant {
    pub fn global(role: Role) -> Self {
        Self {
            role,
            scope: Vec::new(),
        }
    }

    fn covers(&self, name: &str) -> bool {
        self.scope.is_empty() || self.scope.iter().any(|pattern| glob_match(pattern, name))
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.scope.is_empty() {
            write!(f, "{}", self.role)
        } else {
            write!(f, "{} on {}", self.role, self.scope.join(", "))
        }
    }
}

/// A state change someone asks for, with what the decision depends on.
#[derive(Debug, Clone, Copy)]
pub enum Action<'a> {
    Launch {
        project: &'a str,
    },
    Cancel {
        project: &'a str,
        launched_by: &'a str,
    },
    /// Promote, or ask for a promotion where approval is required.
    Promote {
        model: &'a str,
    },
    Rollback {
        model: &'a str,
    },
    Approve {
        model: &'a str,
        requested_by: &'a str,
    },
    /// Register a run's model as a version; change a registered model's or
    /// its versions' aliases, stages, descriptions or tags.
    EditRegistry {
        model: &'a str,
    },
    /// Send a deployment a load test, or cancel one.
    LoadTest {
        model: &'a str,
    },
    /// Create, change or delete the deployment of a model.
    ManageDeployment {
        model: &'a str,
    },
    ManageAccounts,
    /// Where Slipway sends notifications, and their delivery log.
    ManageNotifications,
}

/// Why something was refused, in words the user can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Denied(pub String);

impl From<Denied> for AppError {
    fn from(denied: Denied) -> Self {
        AppError::Forbidden(denied.0)
    }
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub fn authorize(user: &User, action: Action<'_>) -> Result<(), Denied> {
    if !user.authenticated {
        return Err(Denied("Sign in first.".into()));
    }
    let holds = |role: Role, name: &str| {
        user.grants
            .iter()
            .any(|grant| grant.role >= role && grant.covers(name))
    };
    let (allowed, what, role, name) = match action {
        Action::Launch { project } => (
            holds(Role::Trainer, project),
            "Launching",
            Role::Trainer,
            Some(project),
        ),
        Action::Cancel {
            project,
            launched_by,
        } => {
            if launched_by == user.name {
                (
                    holds(Role::Trainer, project),
                    "Cancelling your launch",
                    Role::Trainer,
                    Some(project),
                )
            } else {
                (
                    holds(Role::Admin, project),
                    "Cancelling someone else's launch",
                    Role::Admin,
                    Some(project),
                )
            }
        }
        Action::Promote { model } => (
            holds(Role::Deployer, model),
            "Promoting",
            Role::Deployer,
            Some(model),
        ),
        Action::Rollback { model } => (
            holds(Role::Deployer, model),
            "Rolling back",
            Role::Deployer,
            Some(model),
        ),
        Action::Approve {
            model,
            requested_by,
        } => {
            // Four eyes: no role lets anyone approve their own request.
            if requested_by == user.name {
                return Err(Denied(
                    "You asked for this promotion; someone else has to approve it.".into(),
                ));
            }
            (
                holds(Role::Approver, model),
                "Approving",
                Role::Approver,
                Some(model),
            )
        }
        // Trainers make models; what serves them moves only by Promote.
        Action::EditRegistry { model } => (
            holds(Role::Trainer, model),
            "Editing the registry",
            Role::Trainer,
            Some(model),
        ),
        Action::LoadTest { model } => (
            holds(Role::Deployer, model),
            "Load-testing",
            Role::Deployer,
            Some(model),
        ),
        Action::ManageDeployment { model } => (
            holds(Role::Admin, model),
            "Managing deployments",
            Role::Admin,
            Some(model),
        ),
        Action::ManageAccounts => (global_admin(user), "Managing accounts", Role::Admin, None),
        // A channel hears about every model: no scope is enough for it.
        Action::ManageNotifications => (
            global_admin(user),
            "Managing notifications",
            Role::Admin,
            None,
        ),
    };
    if allowed {
        return Ok(());
    }
    let target = name.map(|name| format!(" for {name}")).unwrap_or_default();
    let held = if user.grants.is_empty() {
        "no role".to_string()
    } else {
        describe_grants(user)
    };
    Err(Denied(format!(
        "{what} needs the {role} role{target}; {} has {held}.",
        user.name
    )))
}

/// Whether `user` holds all that `grant` would give: a role at least as
/// high over every name the grant covers. What a service token may be
/// given, checked when it is made and again on every use.
pub fn grants_cover(user: &User, grant: &Grant) -> Result<(), Denied> {
    let covered = |pattern: &str| {
        user.grants.iter().any(|held| {
            held.role >= grant.role
                && (held.scope.is_empty() || held.scope.iter().any(|own| glob_match(own, pattern)))
        })
    };
    let within = if grant.scope.is_empty() {
        user.grants
            .iter()
            .any(|held| held.role >= grant.role && held.scope.is_empty())
    } else {
        grant.scope.iter().all(|pattern| covered(pattern))
    };
    if within {
        Ok(())
    } else {
        Err(Denied(format!(
            "A token with {grant} needs that much of {}, who has {}.",
            user.name,
            if user.grants.is_empty() {
                "no role".to_string()
            } else {
                describe_grants(user)
            }
        )))
    }
}

fn global_admin(user: &User) -> bool {
    user.grants
        .iter()
        .any(|grant| grant.role == Role::Admin && grant.scope.is_empty())
}

/// Whether the user holds `role` (or more) for anything at all; for
/// navigation, before the project or model is known.
pub fn holds_anywhere(user: &User, role: Role) -> bool {
    user.authenticated && user.grants.iter().any(|grant| grant.role >= role)
}

/// The user's grants in words, as the top bar shows them.
pub fn describe_grants(user: &User) -> String {
    user.grants
        .iter()
        .map(Grant::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether `name` matches `pattern`, where `*` stands for any run of
/// characters and everything else stands for itself.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, grants: Vec<Grant>) -> User {
        User {
            name: name.into(),
            authenticated: true,
            grants,
            token: None,
        }
    }

    #[test]
    fn patterns_match_whole_names() {
        assert!(glob_match("fraud-*", "fraud-v2"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "acb"));
        assert!(!glob_match("fraud-*", "the-fraud-v2"));
        assert!(!glob_match("iris", "iris-classifier"));
        assert!(!glob_match("ab*ba", "aba"));
    }

    #[test]
    fn each_role_adds_to_the_one_before() {
        let viewer = user("v", vec![Grant::global(Role::Viewer)]);
        let trainer = user("t", vec![Grant::global(Role::Trainer)]);
        let deployer = user("d", vec![Grant::global(Role::Deployer)]);
        let approver = user("a", vec![Grant::global(Role::Approver)]);
        let launch = Action::Launch { project: "p" };
        let promote = Action::Promote { model: "m" };
        let approve = Action::Approve {
            model: "m",
            requested_by: "someone",
        };
        assert!(authorize(&viewer, launch).is_err());
        assert!(authorize(&trainer, launch).is_ok());
        assert!(authorize(&trainer, promote).is_err());
        assert!(authorize(&viewer, Action::EditRegistry { model: "m" }).is_err());
        assert!(authorize(&trainer, Action::EditRegistry { model: "m" }).is_ok());
        assert!(authorize(&deployer, promote).is_ok());
        assert!(authorize(&deployer, approve).is_err());
        assert!(authorize(&approver, approve).is_ok());
        assert!(authorize(&approver, Action::ManageAccounts).is_err());
        let err = authorize(&viewer, launch).unwrap_err();
        assert_eq!(
            err.0,
            "Launching needs the trainer role for p; v has viewer."
        );
    }

    #[test]
    fn admins_manage_the_deployments_of_the_models_in_their_scope() {
        let approver = user("a", vec![Grant::global(Role::Approver)]);
        let fraud_admin = user(
            "f",
            vec![Grant {
                role: Role::Admin,
                scope: vec!["fraud-*".into()],
            }],
        );
        let manage = |model| Action::ManageDeployment { model };
        assert!(authorize(&approver, manage("fraud-model")).is_err());
        assert!(authorize(&fraud_admin, manage("fraud-model")).is_ok());
        assert_eq!(
            authorize(&fraud_admin, manage("churn")).unwrap_err().0,
            "Managing deployments needs the admin role for churn; f has admin on fraud-*."
        );
        assert!(authorize(&fraud_admin, Action::ManageAccounts).is_err());
    }

    #[test]
    fn nobody_approves_their_own_request() {
        let admin = user("root", vec![Grant::global(Role::Admin)]);
        let own = Action::Approve {
            model: "m",
            requested_by: "root",
        };
        assert!(authorize(&admin, own).is_err());
    }

    #[test]
    fn trainers_cancel_their_own_launches_and_admins_anyones() {
        let trainer = user("t", vec![Grant::global(Role::Trainer)]);
        let admin = user("root", vec![Grant::global(Role::Admin)]);
        let own = Action::Cancel {
            project: "p",
            launched_by: "t",
        };
        let other = Action::Cancel {
            project: "p",
            launched_by: "x",
        };
        assert!(authorize(&trainer, own).is_ok());
        assert!(authorize(&trainer, other).is_err());
        assert!(authorize(&admin, other).is_ok());
    }

    #[test]
    fn a_scoped_role_acts_only_within_its_scope() {
        let scoped = user(
            "s",
            vec![
                Grant::global(Role::Viewer),
                Grant {
                    role: Role::Deployer,
                    scope: vec!["fraud-*".into()],
                },
            ],
        );
        assert!(authorize(&scoped, Action::Promote { model: "fraud-v2" }).is_ok());
        assert!(authorize(&scoped, Action::Promote { model: "iris" }).is_err());
        let scoped_admin = user(
            "sa",
            vec![Grant {
                role: Role::Admin,
                scope: vec!["fraud-*".into()],
            }],
        );
        assert!(authorize(&scoped_admin, Action::ManageAccounts).is_err());
    }

    #[test]
    fn a_token_gets_no_more_than_its_owner_holds() {
        let scoped = user(
            "s",
            vec![
                Grant::global(Role::Trainer),
                Grant {
                    role: Role::Deployer,
                    scope: vec!["fraud-*".into()],
                },
            ],
        );
        let grant = |role, scope: &[&str]| Grant {
            role,
            scope: scope.iter().map(|s| s.to_string()).collect(),
        };
        assert!(grants_cover(&scoped, &grant(Role::Trainer, &[])).is_ok());
        assert!(grants_cover(&scoped, &grant(Role::Deployer, &["fraud-v2"])).is_ok());
        assert!(grants_cover(&scoped, &grant(Role::Deployer, &["fraud-x*"])).is_ok());
        assert!(grants_cover(&scoped, &grant(Role::Deployer, &["fraud-v2", "iris"])).is_err());
        assert!(grants_cover(&scoped, &grant(Role::Deployer, &[])).is_err());
        assert!(grants_cover(&scoped, &grant(Role::Approver, &["fraud-v2"])).is_err());
    }

    #[test]
    fn anonymous_may_do_nothing() {
        let mut anonymous = User::anonymous();
        anonymous.grants = vec![Grant::global(Role::Admin)];
        assert!(authorize(&anonymous, Action::Launch { project: "p" }).is_err());
    }
}
