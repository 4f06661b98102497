//! The HRIS simulator: pushes joiners, movers and leavers to a hub over SCIM, as Workday would.
//!
//! [`scenario`] is the story `scimhub demo` tells; [`Hris`] is the SCIM client. Steps that SCIM
//! cannot express (approving a request, following a manager's one-click link) are
//! [`Step::Approve`] and [`Step::Acknowledge`]: `scimhub demo` performs them inside the hub, the
//! standalone simulator (`cargo run --example hris-simulator`) prints what an operator would do.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use serde_json::{json, Value};

const CORE: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// The custom extension of `examples/demo-policy.toml` (contract end date, sponsor).
pub const ACME: &str = "urn:example:scim:schemas:extension:acme:2.0:User";

/// A person as the HRIS knows them.
#[derive(Debug, Clone)]
pub struct Person {
    pub user_name: String,
    pub given: String,
    pub family: String,
    pub title: String,
    pub department: String,
    /// `Employee` or `Contractor`.
    pub user_type: String,
    /// userName of the manager (resolved to their SCIM id when pushed).
    pub manager: Option<String>,
    /// Contract end date, `YYYY-MM-DD` (contractors).
    pub contract_end: Option<String>,
    pub sponsor_email: Option<String>,
}

impl Person {
    pub fn email(&self) -> String {
        format!("{}@acme.example", self.user_name)
    }
}

/// One step of the story.
#[derive(Debug, Clone)]
pub enum Step {
    /// A new hire (or contractor) is pushed, active.
    Joiner(Person),
    /// Approve every pending access request, each as the approver the policy names for it (in
    /// the admin API, with a token that acts as that person).
    Approve,
    /// A person changes department and title.
    Mover {
        user_name: String,
        department: String,
        title: String,
    },
    /// The manager clicks "acknowledge" in the mover summary: legacy access goes now.
    Acknowledge { user_name: String },
    /// HR terminates a person (`active = false`).
    Leaver { user_name: String },
}

impl Step {
    /// One line saying what happens.
    pub fn describe(&self) -> String {
        match self {
            Step::Joiner(p) if p.user_type == "Contractor" => format!(
                "contractor: {} {} ({}) joins {} until {}, sponsored by {}",
                p.given,
                p.family,
                p.user_name,
                p.department,
                p.contract_end.as_deref().unwrap_or("?"),
                p.sponsor_email.as_deref().unwrap_or("?")
            ),
            Step::Joiner(p) => format!(
                "joiner: {} {} ({}) joins {} as {}{}",
                p.given,
                p.family,
                p.user_name,
                p.department,
                p.title,
                p.manager
                    .as_deref()
                    .map(|m| format!(", reporting to {m}"))
                    .unwrap_or_default()
            ),
            Step::Approve => "approval: the approvers approve the pending access requests".into(),
            Step::Mover {
                user_name,
                department,
                title,
            } => format!("mover: {user_name} moves to {department} as {title}"),
            Step::Acknowledge { user_name } => format!(
                "one-click: the manager acknowledges {user_name}'s permission change summary"
            ),
            Step::Leaver { user_name } => format!("leaver: HR terminates {user_name}"),
        }
    }

    /// Why the hub does what it does at this step, for someone seeing it the first time.
    pub fn why(&self) -> &'static str {
        match self {
            Step::Joiner(p) if p.user_type == "Contractor" => {
                "A contractor gets only what the contractor profile grants (no HR or finance \
                 system). The access ends by itself on the contract end date, and the sponsor \
                 is reminded 30 days, 7 days and 24 hours before (the timers below)."
            }
            Step::Joiner(_) => {
                "HR marks the hire Active: every profile whose `match` fits their attributes \
                 grants its access at once (birthright). A grant marked `approval` waits for \
                 the person the policy names instead."
            }
            Step::Approve => {
                "Each request goes to the level its grant names: `manager` (the person's \
                 manager), `owner` (the app's owners) or `security`. Nobody may approve their \
                 own access, so the requester's own try is refused first."
            }
            Step::Mover { .. } => {
                "The new role's access is granted now. Access only the old role had is kept \
                 for the old profile's `overlap` window so work can be handed over (the `=` \
                 lines); the manager gets a summary with links to remove it now or extend it."
            }
            Step::Acknowledge { .. } => {
                "The manager follows the one-click link from the summary: opening it only \
                 shows what will happen; confirming removes the legacy access at once."
            }
            Step::Leaver { .. } => {
                "Every account is disabled at once (an app whose policy says `on_leave = \
                 \"delete\"` loses the account instead), and sessions and tokens are revoked."
            }
        }
    }
}

/// The demo story: the owner of GitHub joins, a manager joins and needs his approval, an
/// engineer joins under her and moves to Sales, a contractor joins until a date, the engineer
/// leaves.
pub fn scenario(today: chrono::NaiveDate) -> Vec<Step> {
    let person = |user: &str, given: &str, family: &str, title: &str, dept: &str| Person {
        user_name: user.into(),
        given: given.into(),
        family: family.into(),
        title: title.into(),
        department: dept.into(),
        user_type: "Employee".into(),
        manager: None,
        contract_end: None,
        sponsor_email: None,
    };
    let mut alan = person("alan", "Alan", "Turing", "Software Engineer", "Engineering");
    alan.manager = Some("grace".into());
    let mut cora = person(
        "cora",
        "Cora",
        "Contractor",
        "Contract Engineer",
        "Engineering",
    );
    cora.user_type = "Contractor".into();
    cora.contract_end = Some((today + chrono::Duration::days(45)).to_string());
    cora.sponsor_email = Some("grace@acme.example".into());
    vec![
        // The policy names him owner of the GitHub connector: he decides its owner-level grants.
        Step::Joiner(person("linus", "Linus", "Torvalds", "Platform Owner", "IT")),
        Step::Joiner(person(
            "grace",
            "Grace",
            "Hopper",
            "Engineering Manager",
            "Engineering",
        )),
        Step::Approve,
        Step::Joiner(alan),
        Step::Mover {
            user_name: "alan".into(),
            department: "Sales".into(),
            title: "Account Executive".into(),
        },
        Step::Acknowledge {
            user_name: "alan".into(),
        },
        Step::Joiner(cora),
        Step::Leaver {
            user_name: "alan".into(),
        },
    ]
}

/// A SCIM client for one hub.
#[derive(Debug, Clone)]
pub struct Hris {
    http: reqwest::Client,
    /// `http://host:port/scim/v2`
    base: String,
    token: String,
    /// userName -> SCIM id of the people pushed so far.
    pub ids: BTreeMap<String, String>,
}

impl Hris {
    /// `url` is the hub (`http://127.0.0.1:8080`) or its SCIM base (`…/scim/v2`).
    pub fn new(url: &str, token: &str) -> anyhow::Result<Self> {
        let url = url.trim_end_matches('/');
        let base = if url.ends_with("/scim/v2") {
            url.to_string()
        } else {
            format!("{url}/scim/v2")
        };
        Ok(Hris {
            http: reqwest::Client::builder()
                .user_agent("scimhub-hris-simulator")
                .timeout(std::time::Duration::from_secs(30))
                .build()?,
            base,
            token: token.to_string(),
            ids: BTreeMap::new(),
        })
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = req
            .bearer_auth(&self.token)
            .header("Accept", "application/scim+json");
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/scim+json")
                .body(b.to_string());
        }
        let resp = req.send().await.context("the hub did not answer")?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("the hub answered {status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The SCIM id of `user_name` (asks the hub when it was not pushed by this client).
    pub async fn id_of(&mut self, user_name: &str) -> anyhow::Result<String> {
        if let Some(id) = self.ids.get(user_name) {
            return Ok(id.clone());
        }
        let filter = format!("userName eq \"{user_name}\"");
        let v = self
            .send(
                self.http
                    .get(format!("{}/Users", self.base))
                    .query(&[("filter", filter.as_str())]),
                None,
            )
            .await?;
        let id = v["Resources"][0]["id"]
            .as_str()
            .with_context(|| format!("no user {user_name} in the hub"))?
            .to_string();
        self.ids.insert(user_name.into(), id.clone());
        Ok(id)
    }

    /// POSTs a new, active user; returns its id.
    pub async fn joiner(&mut self, p: &Person) -> anyhow::Result<String> {
        let mut enterprise = json!({"department": p.department});
        if let Some(m) = &p.manager {
            enterprise["manager"] = json!({"value": self.id_of(m).await?});
        }
        let mut doc = json!({
            "schemas": [CORE, ENTERPRISE],
            "userName": p.user_name,
            "externalId": format!("hris-{}", p.user_name),
            "name": {"givenName": p.given, "familyName": p.family},
            "displayName": format!("{} {}", p.given, p.family),
            "title": p.title,
            "userType": p.user_type,
            "active": true,
            "emails": [{"value": p.email(), "type": "work", "primary": true}],
            ENTERPRISE: enterprise,
        });
        if p.contract_end.is_some() || p.sponsor_email.is_some() {
            doc["schemas"] = json!([CORE, ENTERPRISE, ACME]);
            doc[ACME] = json!({
                "contractEndDate": p.contract_end,
                "sponsorEmail": p.sponsor_email,
            });
        }
        let v = self
            .send(self.http.post(format!("{}/Users", self.base)), Some(doc))
            .await?;
        let id = v["id"]
            .as_str()
            .context("the hub returned no id")?
            .to_string();
        self.ids.insert(p.user_name.clone(), id.clone());
        Ok(id)
    }

    async fn patch(&mut self, user_name: &str, ops: Value) -> anyhow::Result<()> {
        let id = self.id_of(user_name).await?;
        self.send(
            self.http.patch(format!("{}/Users/{id}", self.base)),
            Some(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": ops,
            })),
        )
        .await?;
        Ok(())
    }

    /// PATCHes department and title.
    pub async fn mover(
        &mut self,
        user_name: &str,
        department: &str,
        title: &str,
    ) -> anyhow::Result<()> {
        self.patch(
            user_name,
            json!([
                {"op": "replace", "path": "title", "value": title},
                {"op": "replace", "path": format!("{ENTERPRISE}:department"), "value": department},
            ]),
        )
        .await
    }

    /// PATCHes `active` to false.
    pub async fn leaver(&mut self, user_name: &str) -> anyhow::Result<()> {
        self.patch(
            user_name,
            json!([{"op": "replace", "path": "active", "value": false}]),
        )
        .await
    }

    /// Runs the SCIM part of a step; returns false for steps SCIM cannot do.
    pub async fn apply(&mut self, step: &Step) -> anyhow::Result<bool> {
        match step {
            Step::Joiner(p) => {
                self.joiner(p).await?;
            }
            Step::Mover {
                user_name,
                department,
                title,
            } => self.mover(user_name, department, title).await?,
            Step::Leaver { user_name } => self.leaver(user_name).await?,
            Step::Approve | Step::Acknowledge { .. } => return Ok(false),
        }
        Ok(true)
    }
}

/// The standalone simulator: runs the SCIM steps of [`scenario`] against a hub and prints them.
pub async fn run_standalone(url: &str, token: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut hris = Hris::new(url, token)?;
    let mut out = std::io::stdout();
    for step in scenario(chrono::Utc::now().date_naive()) {
        let done = hris.apply(&step).await?;
        let note = if done {
            "pushed"
        } else {
            "skipped: do this in the admin API"
        };
        writeln!(out, "{} ... {note}", step.describe())?;
    }
    for (user, id) in &hris.ids {
        writeln!(out, "{user}: {id}")?;
    }
    Ok(())
}
