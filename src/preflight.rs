//! Preflight checks: everything that can fail before money is spent fails here, and the plan
//! is built from what they fetched. The checks share one catalog and one balance (each fetched
//! once, whoever asks first), and run concurrently. The two checks that spend money (key_smoke,
//! cache_smoke) wait for the free ones and run only when they passed, so a wrong key or an
//! unknown model id provisions nothing (HAZARDS H1, H5). A plan for fifty models therefore
//! takes about as long as one free round trip plus the longest smoke chain.
//!
//! [`Schedule::Sequential`] runs the same requests one after another; it exists to measure what
//! the concurrency buys (see `benches/plan.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use crate::docker::{self, Docker, ImageInfo};
use crate::manifest::Experiment;
use crate::manifest::resolve::CheckName;
use crate::manifest::resolve::CommandCheck;
use crate::money::{Price, Usd};
use crate::openrouter::{ApiError, Client, ErrorClass, wire};
use crate::secret::Secret;

/// How a check ended. Ordered from best to worst, so the worst of several is their `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mark {
    Passed,
    Warned,
    Failed,
}

/// One line of the preflight: a check, its verdict and a one-line detail. A check about many
/// things (models, commands) keeps one item per thing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub mark: Mark,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<Item>,
}

/// What a check found about one model, command or other subject.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Item {
    pub subject: String,
    pub mark: Mark,
    pub detail: String,
}

impl Check {
    fn new(name: &str, mark: Mark, detail: impl Into<String>) -> Check {
        Check { name: name.to_string(), mark, detail: detail.into(), items: Vec::new() }
    }

    /// A check over several items: marked by the worst of them, summarised by the first that
    /// is not a pass, or by `all_passed` when every one passed.
    fn of_items(name: &str, items: Vec<Item>, all_passed: impl Into<String>) -> Check {
        let mark = items.iter().map(|i| i.mark).max().unwrap_or(Mark::Passed);
        let detail = match items.iter().find(|i| i.mark == mark && mark != Mark::Passed) {
            Some(first) => {
                let others = items.iter().filter(|i| i.mark == mark).count() - 1;
                let more = if others > 0 { format!(" (and {others} more)") } else { String::new() };
                format!("{}{more}", first.detail)
            }
            None => all_passed.into(),
        };
        Check { name: name.to_string(), mark, detail, items }
    }
}

impl Item {
    fn new(subject: &str, mark: Mark, detail: impl Into<String>) -> Item {
        Item { subject: subject.to_string(), mark, detail: detail.into() }
    }
}

/// The prices and limits of a listed model, judged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Priced {
    pub id: String,
    pub prompt: Price,
    pub completion: Price,
    /// The price of writing a prompt into the cache. Only models with explicit caching publish
    /// one, which is how cache_smoke picks its model.
    #[serde(default)]
    pub cache_write: Option<Price>,
    #[serde(default)]
    pub context_length: Option<u64>,
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
    #[serde(default)]
    pub supported_parameters: Vec<String>,
}

/// The image the containers will run, as docker knows it locally.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageFacts {
    pub reference: String,
    pub id: String,
}

/// A container of an earlier run of this experiment, found by apf's labels.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeftContainer {
    pub id: String,
    pub name: String,
    pub run: Option<String>,
    pub state: String,
}

/// A key whose name says it belongs to this experiment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeftKey {
    pub hash: String,
    pub name: String,
    pub usage: Usd,
    pub disabled: bool,
}

/// What earlier runs left behind. Runs whose apply is still going (their run lock is held)
/// are not leftovers; they are named in `live_runs` and left out of the lists.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Leftovers {
    pub containers: Vec<LeftContainer>,
    pub keys: Vec<LeftKey>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub live_runs: Vec<String>,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty() && self.keys.is_empty()
    }
}

/// What the checks fetched, for the plan to use.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Facts {
    pub balance: Option<Usd>,
    pub models: BTreeMap<String, Priced>,
    pub image: Option<ImageFacts>,
    pub leftovers: Leftovers,
    /// The runs recorded beside the manifest when the plan was made.
    pub runs: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
    pub facts: Facts,
}

impl Report {
    pub fn failed(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| c.mark == Mark::Failed).collect()
    }
}

/// Whether independent requests go out together or one after another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Schedule {
    #[default]
    Concurrent,
    /// The same requests, one at a time: the baseline the benchmark compares against.
    Sequential,
}

pub struct Inputs<'a> {
    pub exp: &'a Experiment,
    pub client: &'a Client,
    pub management_key: Option<&'a Secret>,
    pub management_key_env: &'a str,
    pub docker: &'a Docker,
    pub schedule: Schedule,
}

/// The cap of key_smoke's key, as DESIGN.md gives it.
const SMOKE_CAP: Usd = Usd(Decimal::from_parts(1, 0, 0, false, 2));
/// Smoke keys expire on their own soon, in case apf dies before deleting them.
const SMOKE_KEY_LIFETIME_MINUTES: i64 = 10;
/// Long enough for every Anthropic model's minimum cacheable prompt (4096 tokens for the
/// largest minimum), counting about four characters a token.
const CACHE_PREFIX_CHARS: usize = 17_600;
/// A custom command that has not finished by then has failed.
const CUSTOM_TIMEOUT: Duration = Duration::from_secs(120);

/// Both futures, together or one after the other as the schedule says.
async fn pair<A: Future, B: Future>(s: Schedule, a: A, b: B) -> (A::Output, B::Output) {
    match s {
        Schedule::Concurrent => tokio::join!(a, b),
        Schedule::Sequential => {
            let x = a.await;
            (x, b.await)
        }
    }
}

/// All futures, together or one after the other.
async fn all<F: Future>(s: Schedule, futures: Vec<F>) -> Vec<F::Output> {
    match s {
        Schedule::Concurrent => futures_util::future::join_all(futures).await,
        Schedule::Sequential => {
            let mut out = Vec::with_capacity(futures.len());
            for f in futures {
                out.push(f.await);
            }
            out
        }
    }
}

/// The account as the management key sees it.
#[derive(Debug, Clone, Copy)]
pub struct Account {
    pub credits: Usd,
    pub usage: Usd,
}

impl Account {
    pub fn balance(self) -> Usd {
        self.credits - self.usage
    }
}

/// What several checks need, fetched once by whichever asks first.
struct Shared<'a> {
    i: &'a Inputs<'a>,
    catalog: OnceCell<Result<Vec<wire::Model>, String>>,
    account: OnceCell<Result<Account, String>>,
    /// Names of the keys this preflight mints, so the leftover search never counts them.
    key_smoke_name: String,
    cache_smoke_name: String,
}

impl<'a> Shared<'a> {
    fn new(i: &'a Inputs<'a>) -> Shared<'a> {
        let tag: u32 = rand::random();
        let prefix = format!("apf/{}/preflight", i.exp.name);
        Shared {
            i,
            catalog: OnceCell::new(),
            account: OnceCell::new(),
            key_smoke_name: format!("{prefix}/key-smoke-{tag:08x}"),
            cache_smoke_name: format!("{prefix}/cache-smoke-{tag:08x}"),
        }
    }

    async fn catalog(&self) -> &Result<Vec<wire::Model>, String> {
        self.catalog
            .get_or_init(|| async {
                self.i.client.models(None).await.map_err(|e| format!("could not list models: {e}"))
            })
            .await
    }

    async fn account(&self) -> &Result<Account, String> {
        self.account.get_or_init(|| fetch_account(self.i)).await
    }
}

/// Run every check the manifest asks for (and the leftover search, always).
pub async fn run(i: Inputs<'_>) -> Report {
    let shared = Shared::new(&i);
    let s = i.schedule;
    let wants = |c| i.exp.preflight.checks.contains(&c);

    let paid_and_free = async {
        let image = async {
            if wants(CheckName::DockerImage) {
                Some(i.docker.image(&i.exp.container.image).await)
            } else {
                None
            }
        };
        // Boxed, as are the smoke checks below: together these futures are too large for a
        // small thread's stack in a debug build.
        let free = Box::pin(pair(s, pair(s, shared.account(), shared.catalog()), image));
        let (((account, catalog), image), mut custom) =
            pair(s, free, Box::pin(custom_commands(i.exp, s))).await;
        let (free, facts) = judge_free(&i, account, catalog, image);
        custom.extend(custom_exprs(i.exp, &facts));
        let blocked = blocked_by(&free, &custom);
        let key = async {
            if wants(CheckName::KeySmoke) {
                Some(Box::pin(key_smoke(&shared, &facts, blocked.as_deref())).await)
            } else {
                None
            }
        };
        let cache = async {
            if wants(CheckName::CacheSmoke) {
                Some(Box::pin(cache_smoke(&shared, &facts, blocked.as_deref())).await)
            } else {
                None
            }
        };
        let smokes = pair(s, key, cache).await;
        (free, facts, custom, smokes)
    };
    let ((free, mut facts, custom, (key, cache)), (leftover_check, found)) =
        pair(s, Box::pin(paid_and_free), Box::pin(find_leftovers(&shared))).await;

    let mut checks = free;
    checks.extend(key);
    checks.extend(cache);
    checks.extend(custom_check(custom));
    checks.push(leftover_check);
    facts.leftovers = found;
    facts.runs =
        crate::state::list_runs(&i.exp.manifest_dir).into_iter().map(|(id, _)| id).collect();
    checks.sort_by_key(|c| order(&c.name));
    Report { checks, facts }
}

/// The order of DESIGN.md's table, then the leftover search.
fn order(name: &str) -> usize {
    const ORDER: [&str; 9] = [
        "balance",
        "math",
        "models",
        "tool_support",
        "key_smoke",
        "cache_smoke",
        "docker_image",
        "custom",
        "leftovers",
    ];
    ORDER.iter().position(|n| *n == name).unwrap_or(ORDER.len())
}

/// The checks that cost nothing, judged from what was fetched.
fn judge_free(
    i: &Inputs<'_>,
    account: &Result<Account, String>,
    catalog: &Result<Vec<wire::Model>, String>,
    image: Option<Result<Option<ImageInfo>, docker::DockerError>>,
) -> (Vec<Check>, Facts) {
    let wants = |c| i.exp.preflight.checks.contains(&c);
    let mut checks = Vec::new();
    let mut facts =
        Facts { balance: account.as_ref().ok().map(|a| a.balance()), ..Facts::default() };

    if wants(CheckName::Balance) || (wants(CheckName::Math) && account.is_err()) {
        checks.push(balance_check(i.exp, account));
    }
    match catalog {
        Ok(list) => {
            let (priced, items) = judge_models(i.exp, list);
            facts.models = priced;
            if wants(CheckName::Models) {
                let n = items.len();
                checks.push(Check::of_items(
                    "models",
                    items,
                    format!("{n} listed, each with a price"),
                ));
            }
            if wants(CheckName::ToolSupport) {
                checks.push(tool_support(i.exp, &facts.models));
            }
        }
        Err(e) => checks.push(Check::new("models", Mark::Failed, e.clone())),
    }
    if wants(CheckName::Math)
        && let Ok(a) = account
    {
        checks.push(math_check(i.exp, a.balance(), &facts.models));
    }
    if let Some(image) = image {
        let (check, found) = image_check(&i.exp.container.image, image);
        facts.image = found;
        checks.push(check);
    }
    (checks, facts)
}

/// Why the checks that spend money must not run: the free checks that failed, custom commands
/// and expressions included.
fn blocked_by(free: &[Check], custom: &[Item]) -> Option<String> {
    let mut failed: Vec<&str> =
        free.iter().filter(|c| c.mark == Mark::Failed).map(|c| c.name.as_str()).collect();
    if custom.iter().any(|i| i.mark == Mark::Failed) {
        failed.push("custom");
    }
    if failed.is_empty() { None } else { Some(failed.join(", ")) }
}

fn not_run(name: &str, blocked: &str) -> Check {
    Check::new(
        name,
        Mark::Warned,
        format!(
            "not run, since {blocked} failed: it spends money, so it waits for the free checks"
        ),
    )
}

// ---- balance and math ------------------------------------------------------------------------

/// The account's credits, refusing a key that is not a management key (HAZARDS H1). `/key` is
/// asked beside `/credits`: its `is_management_key` is what tells an all-zero `/credits` from
/// an inference key apart from an account with nothing left.
async fn fetch_account(i: &Inputs<'_>) -> Result<Account, String> {
    let var = i.management_key_env;
    let Some(key) = i.management_key else {
        return Err(format!("${var} is not set; it must hold an OpenRouter management key"));
    };
    let (info, credits) = pair(i.schedule, i.client.key_info(key), i.client.credits(key)).await;
    let all_zero = |c: &wire::Credits| c.total_credits.0.is_zero() && c.total_usage.0.is_zero();
    match (info, credits) {
        (Ok(info), credits) if !info.is_management_key => {
            let zeros = match credits {
                Ok(c) if all_zero(&c) => ", and the all-zero /credits it was given is no balance",
                _ => "",
            };
            Err(format!(
                "${var} holds an inference key, not a management key (its /key says \
                 is_management_key: false){zeros}; apf needs a management key to read the balance \
                 and mint capped keys"
            ))
        }
        (_, Ok(c)) if !all_zero(&c) => {
            Ok(Account { credits: c.total_credits, usage: c.total_usage })
        }
        (Ok(_), Ok(c)) => Ok(Account { credits: c.total_credits, usage: c.total_usage }),
        (Err(e), Ok(_)) => Err(format!(
            "could not confirm that ${var} is a management key ({}), and /credits answered all \
             zeros, which is what an inference key has been seen to get",
            describe_key_error(var, &e)
        )),
        (_, Err(e)) => Err(describe_key_error(var, &e)),
    }
}

fn describe_key_error(var: &str, e: &ApiError) -> String {
    match e.class {
        ErrorClass::Unauthorized => {
            format!("${var} was refused (401): the key is invalid, disabled or expired")
        }
        ErrorClass::Forbidden => format!(
            "${var} is not a management key ({}); apf needs one to read the balance and mint \
             capped keys",
            e.detail
        ),
        ErrorClass::Transport => format!("could not reach OpenRouter at {}: {}", e.url, e.detail),
        _ => e.to_string(),
    }
}

fn balance_check(exp: &Experiment, account: &Result<Account, String>) -> Check {
    let min = exp.preflight.min_balance;
    match account {
        Ok(a) => {
            let b = a.balance();
            let detail = format!(
                "{b} available (credits {} less usage {}; minimum {min})",
                a.credits, a.usage
            );
            Check::new("balance", if b > min { Mark::Passed } else { Mark::Failed }, detail)
        }
        Err(e) => Check::new("balance", Mark::Failed, e.clone()),
    }
}

fn math_check(exp: &Experiment, balance: Usd, models: &BTreeMap<String, Priced>) -> Check {
    let total: Usd = exp.models.iter().map(|m| m.budget).sum();
    if total > balance {
        return Check::new(
            "math",
            Mark::Failed,
            format!("budgets {total} exceed the balance {balance} by {}", total - balance),
        );
    }
    let margin = balance - total;
    let over = crate::plan::overshoot::total(exp, models);
    match over.known {
        Some(o) if total + o > balance => Check::new(
            "math",
            Mark::Warned,
            format!(
                "budgets {total} fit in {balance} with {margin} to spare, but the worst-case \
                 overshoot of {o} would not"
            ),
        ),
        _ => Check::new(
            "math",
            Mark::Passed,
            format!("budgets {total} fit in {balance} with {margin} to spare"),
        ),
    }
}

// ---- models and tool support -----------------------------------------------------------------

/// Every id the experiment's keys may use: each model's own, then its extra models.
fn wanted_ids(exp: &Experiment) -> Vec<&str> {
    let mut seen = BTreeSet::new();
    exp.models
        .iter()
        .flat_map(|m| {
            std::iter::once(m.id.as_str()).chain(m.extra_models.iter().map(String::as_str))
        })
        .filter(|id| seen.insert(*id))
        .collect()
}

fn judge_models(exp: &Experiment, list: &[wire::Model]) -> (BTreeMap<String, Priced>, Vec<Item>) {
    let by_id: BTreeMap<&str, &wire::Model> = list.iter().map(|m| (m.id.as_str(), m)).collect();
    let mut priced = BTreeMap::new();
    let mut items = Vec::new();
    for id in wanted_ids(exp) {
        let Some(model) = by_id.get(id) else {
            items.push(Item::new(id, Mark::Failed, unlisted(id, by_id.keys().copied())));
            continue;
        };
        match judge_prices(model) {
            Ok((p, item)) => {
                priced.insert(id.to_string(), p);
                items.push(item);
            }
            Err(item) => items.push(item),
        }
    }
    (priced, items)
}

/// "x is not listed", with the closest listed ids. apf names them; it never substitutes one.
pub fn unlisted<'a>(id: &str, listed: impl Iterator<Item = &'a str>) -> String {
    let near = closest(id, listed);
    if near.is_empty() {
        format!("{id} is not listed, and no listed id is close to it")
    } else {
        format!("{id} is not listed; the closest listed ids are {}", near.join(", "))
    }
}

/// Up to three listed ids nearest to `id`.
pub fn closest<'a>(id: &str, ids: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut scored: Vec<(f64, &str)> = ids.map(|c| (strsim::jaro_winkler(id, c), c)).collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    scored.into_iter().filter(|(s, _)| *s > 0.7).take(3).map(|(_, c)| c.to_string()).collect()
}

/// A listed model's prices, exactly, or an item naming the model and the field that is not a
/// price (HAZARDS H4).
fn judge_prices(model: &wire::Model) -> Result<(Priced, Item), Item> {
    let id = model.id.as_str();
    let field =
        |name: &str, raw: &str| Price::parse(raw).map_err(|e| format!("{id}: pricing.{name} {e}"));
    let prompt = field("prompt", &model.pricing.prompt);
    let completion = field("completion", &model.pricing.completion);
    let (prompt, completion) = match (prompt, completion) {
        (Ok(p), Ok(c)) => (p, c),
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => return Err(Item::new(id, Mark::Failed, e)),
        (Err(a), Err(b)) => {
            return Err(Item::new(id, Mark::Failed, format!("{a}; pricing.completion too: {b}")));
        }
    };
    let mut mark = Mark::Passed;
    let mut notes = Vec::new();
    let cache_write = match model.pricing.input_cache_write.as_deref() {
        None => None,
        Some(raw) => match Price::parse(raw) {
            Ok(p @ Price::PerToken(_)) => Some(p),
            Ok(Price::Variable) => None,
            Err(e) => {
                mark = Mark::Warned;
                notes.push(format!("pricing.input_cache_write {e}, so caching costs are unknown"));
                None
            }
        },
    };
    let detail = if prompt == Price::Variable || completion == Price::Variable {
        mark = Mark::Warned;
        format!(
            "{id}: variable price (a router): its cost is never estimated; its key's cap still \
             holds"
        )
    } else if prompt.is_free() && completion.is_free() {
        format!("{id}: free; it still gets a capped key")
    } else {
        format!("{id}: prompt {prompt}, completion {completion}")
    };
    let detail = if notes.is_empty() { detail } else { format!("{detail}; {}", notes.join("; ")) };
    let top = model.top_provider.as_ref();
    let priced = Priced {
        id: id.to_string(),
        prompt,
        completion,
        cache_write,
        context_length: model.context_length.or_else(|| top.and_then(|t| t.context_length)),
        max_completion_tokens: top.and_then(|t| t.max_completion_tokens),
        supported_parameters: model.supported_parameters.clone(),
    };
    Ok((priced, Item::new(id, mark, detail)))
}

fn tool_support(exp: &Experiment, priced: &BTreeMap<String, Priced>) -> Check {
    let common = &exp.preflight.common_required_params;
    let mut items = Vec::new();
    let ids: BTreeSet<&str> = wanted_ids(exp).into_iter().collect();
    for named in exp.preflight.required_params.keys() {
        if !ids.contains(named.as_str()) {
            items.push(Item::new(
                named,
                Mark::Warned,
                format!("required_params names {named}, which no model of this experiment uses"),
            ));
        }
    }
    for id in &ids {
        let mut required: Vec<&str> = common.iter().map(String::as_str).collect();
        if let Some(extra) = exp.preflight.required_params.get(*id) {
            required.extend(extra.iter().map(String::as_str));
        }
        if required.is_empty() {
            continue;
        }
        // A model that is not listed has failed the models check already.
        let Some(p) = priced.get(*id) else { continue };
        let missing: Vec<&str> = required
            .iter()
            .copied()
            .filter(|r| !p.supported_parameters.iter().any(|s| s == r))
            .collect();
        items.push(if missing.is_empty() {
            Item::new(id, Mark::Passed, format!("{id} supports {}", required.join(", ")))
        } else {
            Item::new(id, Mark::Failed, format!("{id} does not support {}", missing.join(", ")))
        });
    }
    let n = items.len();
    let summary = if n == 0 {
        "no request parameters are required".to_string()
    } else {
        format!("{n} model(s) support what the manifest requires")
    };
    Check::of_items("tool_support", items, summary)
}

// ---- docker image ----------------------------------------------------------------------------

fn image_check(
    reference: &str,
    found: Result<Option<ImageInfo>, docker::DockerError>,
) -> (Check, Option<ImageFacts>) {
    match found {
        Ok(Some(info)) if exact_image_match(reference, &info) => {
            let short: String = info.id.trim_start_matches("sha256:").chars().take(12).collect();
            let facts = ImageFacts { reference: reference.to_string(), id: info.id.clone() };
            (
                Check::new("docker_image", Mark::Passed, format!("{reference} is {short}")),
                Some(facts),
            )
        }
        Ok(Some(info)) => {
            let short: String = info.id.trim_start_matches("sha256:").chars().take(12).collect();
            let detail = format!(
                "{reference} matches image {short} only by id prefix or a loose name; name the \
                 image by its exact tag or digest"
            );
            (Check::new("docker_image", Mark::Failed, detail), None)
        }
        Ok(None) => (
            Check::new(
                "docker_image",
                Mark::Failed,
                format!("{reference} is not present locally (apf never pulls)"),
            ),
            None,
        ),
        Err(e) => (Check::new("docker_image", Mark::Failed, e.to_string()), None),
    }
}

/// Whether `docker image inspect REFERENCE` found the image by the reference itself (a tag, a
/// digest or the whole id), not by a prefix of its id.
pub fn exact_image_match(reference: &str, info: &ImageInfo) -> bool {
    let r = reference.trim();
    if r.starts_with("sha256:") {
        return info.id == r;
    }
    if let Some((name, digest)) = r.split_once('@') {
        let repo = normal_repo(strip_tag(name));
        return info.repo_digests.iter().any(|d| {
            d.split_once('@').is_some_and(|(n, dg)| dg == digest && normal_repo(n) == repo)
        });
    }
    let wanted = normal_repo(&with_tag(r));
    info.repo_tags.iter().any(|t| normal_repo(t) == wanted)
}

fn strip_tag(name: &str) -> &str {
    let slash = name.rfind('/').map_or(0, |p| p + 1);
    match name[slash..].rfind(':') {
        Some(colon) => &name[..slash + colon],
        None => name,
    }
}

fn with_tag(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') { name.to_string() } else { format!("{name}:latest") }
}

/// Docker Hub's implicit prefixes, removed, so `alpine:3` and `docker.io/library/alpine:3`
/// compare equal.
fn normal_repo(name: &str) -> String {
    let mut n = name;
    for prefix in ["index.docker.io/", "docker.io/"] {
        n = n.strip_prefix(prefix).unwrap_or(n);
    }
    n.strip_prefix("library/").unwrap_or(n).to_string()
}

// ---- key_smoke and cache_smoke ---------------------------------------------------------------

fn expiry() -> String {
    (chrono::Utc::now() + chrono::Duration::minutes(SMOKE_KEY_LIFETIME_MINUTES))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A key made for one check, deleted whatever the check found.
async fn with_key<F, Fut>(
    shared: &Shared<'_>,
    name: &str,
    cap: Usd,
    body: F,
) -> Result<String, String>
where
    F: FnOnce(Secret) -> Fut,
    Fut: Future<Output = Result<String, String>>,
{
    let i = shared.i;
    let Some(mgmt) = i.management_key else {
        return Err(format!("${} is not set", i.management_key_env));
    };
    let create = wire::CreateKey {
        name: name.to_string(),
        limit: Some(cap),
        limit_reset: None,
        include_byok_in_limit: Some(true),
        expires_at: Some(expiry()),
    };
    let (key, secret) = i.client.create_key(mgmt, &create).await.map_err(|e| {
        let maybe = if e.class == ErrorClass::Server {
            format!("; a key named {name} may exist anyway and expires within minutes")
        } else {
            String::new()
        };
        format!("could not create a key: {e}{maybe}")
    })?;
    let outcome = body(secret).await;
    let deleted = i.client.delete_key(mgmt, &key.hash).await;
    match (outcome, deleted) {
        (Ok(detail), Ok(())) => Ok(detail),
        (Err(detail), _) => Err(detail),
        (Ok(_), Err(e)) => Err(format!(
            "the key {name} could not be deleted ({e}); `apf destroy` removes it, and it expires \
             within {SMOKE_KEY_LIFETIME_MINUTES} minutes"
        )),
    }
}

/// The model a smoke call goes to: the cheapest of the experiment's models with a fixed price,
/// paid before free (a free model proves less about billing), never a router.
fn smoke_model<'a>(exp: &Experiment, models: &'a BTreeMap<String, Priced>) -> Option<&'a Priced> {
    exp.models
        .iter()
        .filter_map(|m| models.get(&m.id))
        .filter_map(|p| Some((p, p.completion.per_token()?, p.prompt.per_token()?)))
        .min_by_key(|(_, c, p)| (c.0.is_zero(), *c, *p))
        .map(|(p, _, _)| p)
}

/// Mint a key capped at $0.01, read its cap back, make one real call with it, and delete it.
async fn key_smoke(shared: &Shared<'_>, facts: &Facts, blocked: Option<&str>) -> Check {
    if let Some(b) = blocked {
        return not_run("key_smoke", b);
    }
    let i = shared.i;
    let Some(model) = smoke_model(i.exp, &facts.models) else {
        return Check::new(
            "key_smoke",
            Mark::Failed,
            "no model of this experiment has a fixed price to make the smoke call with",
        );
    };
    let id = model.id.clone();
    let outcome = with_key(shared, &shared.key_smoke_name, SMOKE_CAP, |key| async move {
        let info = i
            .client
            .key_info(&key)
            .await
            .map_err(|e| format!("the new key could not be read: {e}"))?;
        if info.limit != Some(SMOKE_CAP) {
            let shown = info.limit.map_or("no limit".to_string(), |l| l.to_string());
            return Err(format!("the new key reads back with {shown}, not {SMOKE_CAP}"));
        }
        let body = wire::ChatRequest {
            model: Some(id.clone()),
            messages: vec![serde_json::json!({"role": "user", "content": "Reply with OK."})],
            max_tokens: Some(16),
            ..Default::default()
        };
        let resp =
            chat(i.client, &key, &body).await.map_err(|e| format!("one call to {id}: {e}"))?;
        let cost = resp.usage.and_then(|u| u.cost).unwrap_or(Usd::ZERO);
        Ok(format!(
            "a key capped at {SMOKE_CAP} read back with its cap, answered one call to {id} \
             ({cost}), and was deleted"
        ))
    })
    .await;
    match outcome {
        Ok(detail) => Check::new("key_smoke", Mark::Passed, detail),
        Err(detail) => Check::new("key_smoke", Mark::Failed, detail),
    }
}

/// A completion, with a 200 that carries `finish_reason: "error"` counted as the failure it is.
async fn chat(
    client: &Client,
    key: &Secret,
    body: &wire::ChatRequest,
) -> Result<wire::ChatResponse, String> {
    let resp = client.chat(key, body).await.map_err(|e| e.to_string())?;
    let errored = resp
        .choices
        .iter()
        .any(|c| c.get("finish_reason").and_then(|f| f.as_str()) == Some("error"));
    if errored {
        return Err("the answer ended with finish_reason \"error\"".into());
    }
    Ok(resp)
}

/// The model cache_smoke tests: the experiment's model with explicit caching (a cache-write
/// price) whose write is cheapest.
fn caching_model<'a>(exp: &Experiment, models: &'a BTreeMap<String, Priced>) -> Option<&'a Priced> {
    wanted_ids(exp)
        .into_iter()
        .filter_map(|id| models.get(id))
        .filter_map(|p| {
            let write = p.cache_write?.per_token()?;
            p.prompt.per_token()?;
            p.completion.per_token()?;
            Some((p, write))
        })
        .min_by_key(|(_, w)| *w)
        .map(|(p, _)| p)
}

/// A prefix long enough to be cached by any model, different on every run so that the first
/// request writes the cache and only the second can read it.
fn cache_prefix() -> String {
    let nonce: u64 = rand::random();
    let mut text = format!("apf cache check {nonce:016x}. Keep this reference text in mind.\n");
    let mut n = 0u32;
    while text.len() < CACHE_PREFIX_CHARS {
        n += 1;
        text.push_str(&format!(
            "Clause {n}: an agent in the field keeps its own ledger, reads its budget file before \
             each step, and stops when the remaining balance cannot pay for one more turn.\n"
        ));
    }
    text
}

/// The most two cache requests can cost, rounded up to a cent: their prompt written at the
/// dearer of the prompt and cache-write prices, plus sixteen completion tokens each. Tokens are
/// counted as three characters each, more than any tokenizer makes of this text.
fn cache_cap(model: &Priced, chars: usize) -> Option<Usd> {
    let tokens = (chars as u64).div_ceil(3);
    let prompt = model.prompt.per_token()?.max(model.cache_write?.per_token()?);
    let one = prompt * Decimal::from(tokens) + model.completion.cost(16)?;
    let two = one * Decimal::from(2);
    Some(Usd((two.0 * Decimal::from(100)).ceil() / Decimal::from(100)).max(SMOKE_CAP))
}

/// Send one long cacheable prefix twice to a model with explicit caching; the second answer
/// must report cached tokens.
async fn cache_smoke(shared: &Shared<'_>, facts: &Facts, blocked: Option<&str>) -> Check {
    if let Some(b) = blocked {
        return not_run("cache_smoke", b);
    }
    let i = shared.i;
    let Some(model) = caching_model(i.exp, &facts.models) else {
        return Check::new(
            "cache_smoke",
            Mark::Warned,
            "no model of this experiment caches prompts explicitly (none publishes a cache-write \
             price), so there is nothing to test",
        );
    };
    let prefix = cache_prefix();
    let Some(cap) = cache_cap(model, prefix.len()) else {
        return Check::new("cache_smoke", Mark::Failed, format!("{}: no fixed price", model.id));
    };
    let id = model.id.clone();
    let body = wire::ChatRequest {
        model: Some(id.clone()),
        messages: vec![
            serde_json::json!({"role": "system", "content": [
                {"type": "text", "text": prefix, "cache_control": {"type": "ephemeral"}}
            ]}),
            serde_json::json!({"role": "user", "content": "Reply with OK."}),
        ],
        max_tokens: Some(16),
        ..Default::default()
    };
    let outcome = with_key(shared, &shared.cache_smoke_name, cap, |key| async move {
        let first =
            chat(i.client, &key, &body).await.map_err(|e| format!("{id}, first request: {e}"))?;
        let second =
            chat(i.client, &key, &body).await.map_err(|e| format!("{id}, second request: {e}"))?;
        let tokens = |r: &wire::ChatResponse| {
            let d = r.usage.as_ref().and_then(|u| u.prompt_tokens_details.as_ref());
            (
                d.and_then(|d| d.cache_write_tokens).unwrap_or(0),
                d.and_then(|d| d.cached_tokens).unwrap_or(0),
            )
        };
        let (written, _) = tokens(&first);
        let (_, read) = tokens(&second);
        let cost: Usd =
            [&first, &second].iter().filter_map(|r| r.usage.as_ref().and_then(|u| u.cost)).sum();
        if read == 0 {
            return Err(format!(
                "{id}: the second of two identical cacheable requests reported no cached tokens \
                 (the first wrote {written}), so every turn would pay the full prompt price"
            ));
        }
        Ok(format!(
            "{id}: the second of two cacheable requests read {read} cached tokens (the first \
             wrote {written}); {cost} spent on a key capped at {cap}, deleted"
        ))
    })
    .await;
    match outcome {
        Ok(detail) => Check::new("cache_smoke", Mark::Passed, detail),
        Err(detail) => Check::new("cache_smoke", Mark::Failed, detail),
    }
}

// ---- custom checks ---------------------------------------------------------------------------

/// The custom commands, run together with the free fetches. Expression checks need the fetched
/// data and are judged in [`custom_exprs`]; both end up in one `custom` check, commands first.
async fn custom_commands(exp: &Experiment, s: Schedule) -> Vec<Item> {
    all(s, exp.preflight.custom.iter().map(|c| custom_command(exp, c)).collect()).await
}

async fn custom_command(exp: &Experiment, c: &CommandCheck) -> Item {
    let Some((program, args)) = c.run.split_first() else {
        return Item::new(&c.name, Mark::Failed, format!("{}: no command to run", c.name));
    };
    let child = tokio::process::Command::new(program)
        .args(args)
        .current_dir(&exp.manifest_dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output();
    let shown = c.run.join(" ");
    let failed = |detail: String| Item::new(&c.name, Mark::Failed, format!("{}: {detail}", c.name));
    match tokio::time::timeout(CUSTOM_TIMEOUT, child).await {
        Ok(Ok(out)) if out.status.success() => Item::new(&c.name, Mark::Passed, c.name.clone()),
        Ok(Ok(out)) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
            let said = if last.is_empty() { String::new() } else { format!(": {last}") };
            failed(format!("`{shown}` exited with {}{said}", out.status))
        }
        Ok(Err(e)) => failed(format!("could not run `{program}`: {e}")),
        Err(_) => failed(format!("`{shown}` did not finish within {}s", CUSTOM_TIMEOUT.as_secs())),
    }
}

/// The custom expressions, each over the balance and the catalog as fetched.
fn custom_exprs(exp: &Experiment, facts: &Facts) -> Vec<Item> {
    let data = facts.balance.map(|b| check_facts(exp, b, &facts.models));
    exp.preflight
        .custom_expr
        .iter()
        .map(|e| {
            let failed =
                |why: String| Item::new(&e.name, Mark::Failed, format!("{}: {why}", e.name));
            let Some(data) = &data else {
                return failed("not evaluated, since the balance could not be read".into());
            };
            match e.condition.holds_for_check(data) {
                Ok(true) => Item::new(&e.name, Mark::Passed, e.name.clone()),
                Ok(false) => failed(format!("`{}` does not hold", e.condition.source())),
                Err(why) => failed(why),
            }
        })
        .collect()
}

/// The fetched data as expressions see it. Expressions compute in doubles; nothing they give
/// back is money apf adds up.
fn check_facts(
    exp: &Experiment,
    balance: Usd,
    models: &BTreeMap<String, Priced>,
) -> crate::expr::CheckFacts {
    let per_mtok = |p: Price| p.per_token().map(|t| (t * Decimal::from(1_000_000)).to_f64());
    crate::expr::CheckFacts {
        balance_usd: balance.to_f64(),
        total_budget_usd: exp.models.iter().map(|m| m.budget).sum::<Usd>().to_f64(),
        models: exp
            .models
            .iter()
            .map(|m| {
                let p = models.get(&m.id);
                crate::expr::ModelFacts {
                    id: m.id.clone(),
                    alias: m.alias.clone(),
                    budget_usd: m.budget.to_f64(),
                    prompt_usd_per_mtok: p.and_then(|p| per_mtok(p.prompt)),
                    completion_usd_per_mtok: p.and_then(|p| per_mtok(p.completion)),
                    context_length: p.and_then(|p| p.context_length),
                    supported_parameters: p
                        .map(|p| p.supported_parameters.clone())
                        .unwrap_or_default(),
                }
            })
            .collect(),
    }
}

fn custom_check(items: Vec<Item>) -> Option<Check> {
    if items.is_empty() {
        return None;
    }
    let summary = items.iter().map(|i| i.subject.as_str()).collect::<Vec<_>>().join("; ");
    Some(Check::of_items("custom", items, summary))
}

// ---- leftovers -------------------------------------------------------------------------------

/// Containers labelled with this experiment and keys named after it, across every page of the
/// key listing (HAZARDS H7), less those of a run that is being applied right now.
async fn find_leftovers(shared: &Shared<'_>) -> (Check, Leftovers) {
    let i = shared.i;
    let exp = &i.exp.name;
    let prefix = format!("apf/{exp}/");
    let keys = async {
        match i.management_key {
            Some(m) => Some(i.client.list_keys(m, true).await),
            None => None,
        }
    };
    let labels = [(docker::LABEL_MANAGED, "true"), (docker::LABEL_EXPERIMENT, exp.as_str())];
    let containers = i.docker.find(&labels);
    let (keys, containers) = pair(i.schedule, keys, containers).await;

    let mut problems = Vec::new();
    let mut found = Leftovers::default();
    match containers {
        Ok(list) => {
            found.containers = list
                .into_iter()
                .map(|c| LeftContainer {
                    run: c.labels.get(docker::LABEL_RUN).cloned(),
                    id: c.id,
                    name: c.name,
                    state: c.state,
                })
                .collect();
        }
        Err(e) => problems.push(format!("containers were not looked for: {e}")),
    }
    match keys {
        Some(Ok(list)) => {
            found.keys = list
                .into_iter()
                .filter(|k| k.name.starts_with(&prefix))
                .filter(|k| k.name != shared.key_smoke_name && k.name != shared.cache_smoke_name)
                .map(|k| LeftKey {
                    hash: k.hash,
                    name: k.name,
                    usage: k.usage,
                    disabled: k.disabled,
                })
                .collect();
        }
        Some(Err(e)) => problems.push(format!("keys were not looked for: {e}")),
        None => {
            problems.push(format!("keys were not looked for: ${} is not set", i.management_key_env))
        }
    }
    drop_live_runs(&i.exp.manifest_dir, &prefix, &mut found);

    let (nc, nk) = (found.containers.len(), found.keys.len());
    let mut detail = if found.is_empty() {
        "nothing left by earlier runs".to_string()
    } else {
        format!(
            "{nc} container(s) and {nk} key(s) left by earlier runs; `apf destroy --experiment \
             {exp}` removes them (apply leaves them alone)"
        )
    };
    if !found.live_runs.is_empty() {
        detail.push_str(&format!("; run(s) {} are being applied now", found.live_runs.join(", ")));
    }
    let mark = if found.is_empty() && problems.is_empty() { Mark::Passed } else { Mark::Warned };
    if !problems.is_empty() {
        detail = format!("{detail}; {}", problems.join("; "));
    }
    (Check::new("leftovers", mark, detail), found)
}

/// The run of a key named `apf/<experiment>/<run>/<alias>`.
fn key_run<'a>(prefix: &str, name: &'a str) -> Option<&'a str> {
    name.strip_prefix(prefix)?.split('/').next()
}

/// Take out what belongs to runs whose apply holds its run lock right now.
fn drop_live_runs(manifest_dir: &Path, prefix: &str, found: &mut Leftovers) {
    let mut runs: BTreeSet<String> =
        found.containers.iter().filter_map(|c| c.run.clone()).collect();
    runs.extend(found.keys.iter().filter_map(|k| key_run(prefix, &k.name)).map(str::to_string));
    let live: BTreeSet<String> =
        runs.into_iter().filter(|r| is_being_applied(manifest_dir, r)).collect();
    found.containers.retain(|c| !c.run.as_ref().is_some_and(|r| live.contains(r)));
    found.keys.retain(|k| !key_run(prefix, &k.name).is_some_and(|r| live.contains(r)));
    found.live_runs = live.into_iter().collect();
}

/// Whether an apf process holds the run's lock. The lock file is only opened to read, so a
/// dead run's folder is left as it was.
fn is_being_applied(manifest_dir: &Path, run: &str) -> bool {
    if run.is_empty() || run.contains(['/', '\\']) || run == ".." {
        return false;
    }
    let path = crate::state::RunDir::new(manifest_dir, run).lock();
    let Ok(file) = std::fs::File::open(&path) else { return false };
    matches!(file.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock))
}

// ---- a saved plan, checked again -------------------------------------------------------------

/// What a saved plan depends on, fetched again when it is applied (HAZARDS H5, H18).
pub struct Current {
    pub balance: Result<Usd, String>,
    pub catalog: Result<BTreeMap<String, Result<Priced, String>>, String>,
    pub image: Result<Option<ImageFacts>, String>,
}

/// Fetch the balance, the catalog and the image id again, together.
pub async fn recheck(i: &Inputs<'_>) -> Current {
    let reference = i.exp.container.image.as_str();
    let ((account, models), image) = pair(
        i.schedule,
        pair(i.schedule, fetch_account(i), i.client.models(None)),
        i.docker.image(reference),
    )
    .await;
    let catalog = models.map_err(|e| format!("could not list models: {e}")).map(|list| {
        list.iter()
            .map(|m| (m.id.clone(), judge_prices(m).map(|(p, _)| p).map_err(|item| item.detail)))
            .collect()
    });
    let image = match image {
        Ok(Some(info)) if exact_image_match(reference, &info) => {
            Ok(Some(ImageFacts { reference: reference.to_string(), id: info.id }))
        }
        Ok(_) => Ok(None),
        Err(e) => Err(e.to_string()),
    };
    Current { balance: account.map(Account::balance), catalog, image }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str, tags: &[&str], digests: &[&str]) -> ImageInfo {
        ImageInfo {
            id: id.to_string(),
            repo_tags: tags.iter().map(|s| s.to_string()).collect(),
            repo_digests: digests.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn an_image_is_matched_by_exact_tag_digest_or_whole_id_only() {
        let id = format!("sha256:{}", "ab".repeat(32));
        let digest = format!("sha256:{}", "cd".repeat(32));
        let img = info(&id, &["apf-demo-agent:latest", "alpine:3"], &[&format!("alpine@{digest}")]);
        assert!(exact_image_match("apf-demo-agent:latest", &img));
        assert!(exact_image_match("apf-demo-agent", &img), "no tag means :latest");
        assert!(exact_image_match("docker.io/library/alpine:3", &img));
        assert!(exact_image_match(&format!("alpine@{digest}"), &img));
        assert!(exact_image_match(&format!("alpine:3@{digest}"), &img));
        assert!(exact_image_match(&id, &img));
        assert!(!exact_image_match("abababab", &img), "an id prefix is not exact");
        assert!(!exact_image_match("sha256:abab", &img));
        assert!(!exact_image_match("apf-demo-agent:v2", &img));
        assert!(!exact_image_match(&format!("other@{digest}"), &img));
    }

    #[test]
    fn closest_ids_are_named_and_never_taken() {
        let listed = ["anthropic/claude-sonnet-4", "anthropic/claude-opus-4", "openai/gpt-4o"];
        let text = unlisted("anthropic/claude-sonet-4", listed.iter().copied());
        assert!(text.starts_with("anthropic/claude-sonet-4 is not listed"), "{text}");
        assert!(text.contains("anthropic/claude-sonnet-4"), "{text}");
        let none = unlisted("zzz", listed.iter().copied());
        assert!(none.contains("no listed id is close"), "{none}");
    }

    #[test]
    fn the_cache_cap_covers_two_requests_and_rounds_up_to_a_cent() {
        let p = |s: &str| Price::parse(s).unwrap();
        let sonnet = Priced {
            id: "anthropic/claude-sonnet-4".into(),
            prompt: p("0.000003"),
            completion: p("0.000015"),
            cache_write: Some(p("0.00000375")),
            context_length: Some(200_000),
            max_completion_tokens: Some(64_000),
            supported_parameters: vec![],
        };
        // 17,600 characters are at most 5,867 tokens: 2 × (5,867 × $3.75/1M + 16 × $15/1M).
        let cap = cache_cap(&sonnet, 17_600).unwrap();
        assert_eq!(cap, "0.05".parse().unwrap());
        let variable = Priced { prompt: Price::Variable, ..sonnet };
        assert_eq!(cache_cap(&variable, 17_600), None);
    }

    #[test]
    fn a_key_name_tells_its_run() {
        assert_eq!(
            key_run("apf/x/", "apf/x/20260101-000000-abcd/llama"),
            Some("20260101-000000-abcd")
        );
        assert_eq!(key_run("apf/x/", "apf/y/r/llama"), None);
    }
}
