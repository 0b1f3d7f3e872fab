//! `byok serve`: open (or create) the data directory, the managed key and the store, print the
//! address and (on first start only) the operator token, and serve the API until SIGINT or
//! SIGTERM.
//!
//! - `listener`: the accept loop, the connection cap and hyper's timeouts.
//! - `head_timer`: hyper's timer for the request-head timeout, one per connection.
//! - `idle`: closes connections on which nothing moves.
//! - `tls`: the certificate, reloaded on SIGHUP.

pub mod head_timer;
pub mod idle;
pub mod listener;
pub mod tls;

use std::io::Write;
use std::sync::Arc;

pub use listener::ConnLimits;

use crate::api::rate_limit::RateLimits;
use crate::config::{Config, LogFormat};
use crate::service::Service;
use crate::service::kms::KmsSettings;
use crate::service::root_checks;
use crate::store::{self, Database};
use crate::{api, managed};

/// Sets up structured logs. Logs carry ids, routes and outcomes, never key bytes or tokens.
pub fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BYOK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    // Colour only on a terminal: escape codes in a log file or a pipe are noise to every reader.
    let builder = tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

#[cfg(unix)]
fn create_private_dir(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

#[cfg(not(unix))]
fn create_private_dir(path: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(path)
}

/// Takes `dir/byok.lock` for this process's life (the lock goes with the process, a crash
/// included). SQLite lets a second process open the same database, but nothing carries one
/// server's changes to the other (no notifications, no poll on SQLite): a pause made through
/// one would never reach the other's memory. So a second `serve` on a directory in use refuses
/// to start; several servers need PostgreSQL.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, String> {
    let path = dir.join("byok.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "another byok serve is using the data directory {} (it holds {}): run one server per SQLite data directory, or several over PostgreSQL (--database-url)",
            dir.display(),
            path.display()
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}

/// Says at start how many root versions have no check value, and what that means: before the
/// upgrade pass has completed, versions an older byok left (run it); after, a modified
/// database (never record those).
async fn warn_of_unchecked_roots(service: &Service) -> Result<(), String> {
    let unchecked = service
        .unchecked_root_versions()
        .await
        .map_err(|e| format!("cannot count the unchecked root versions: {e:?}"))?;
    if unchecked == 0 {
        return Ok(());
    }
    let done = service
        .store()
        .meta(root_checks::DONE)
        .await
        .map_err(|e| e.to_string())?;
    match done {
        None => tracing::warn!(
            versions = unchecked,
            "root key versions stored without a check value (by a byok older than them) are refused: run `byok serve --record-root-checks` once, with this configuration"
        ),
        Some(at) => tracing::error!(
            versions = unchecked,
            pass_completed_at_ms = %at,
            "root key versions without a check value, after the upgrade pass completed: the database was modified (a root copy may have been replaced); they stay refused. Investigate; do not record them"
        ),
    }
    Ok(())
}

/// `--record-root-checks`: records the check value of every root version stored without one,
/// says what it did, and fails if any is left (its org's error is logged; run it again once
/// that org's key holder answers, or the org is resumed). Once a pass leaves none, it is done
/// for good: a later one refuses to run (a version unchecked then was not left by an older
/// byok, and recording it would trust whatever root a database writer put there).
async fn record_root_checks(service: &Service) -> Result<(), String> {
    let store = service.store();
    if let Some(at) = store
        .meta(root_checks::DONE)
        .await
        .map_err(|e| e.to_string())?
    {
        return Err(format!(
            "--record-root-checks: the pass completed already (at {at} ms since the epoch), or this database was made by a byok that keeps check values: a root version without one now was not left by an older byok. It stays refused; investigate how the database was modified"
        ));
    }
    let report = service
        .record_root_checks()
        .await
        .map_err(|e| format!("cannot read the orgs: {e:?}"))?;
    if report.failed.is_empty() {
        store
            .set_meta(root_checks::DONE, &store::now_ms().to_string())
            .await
            .map_err(|e| e.to_string())?;
    }
    for (org, version, error) in &report.failed {
        tracing::error!(%org, version, %error, "root version left without a check value");
    }
    println!(
        "root check values: {} recorded, {} left without one",
        report.recorded,
        report.failed.len()
    );
    if report.failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} root version(s) were not recorded (each is logged above with its org and error); they stay refused: run --record-root-checks again once their key holders answer",
            report.failed.len()
        ))
    }
}

/// Runs the server until a shutdown signal.
pub async fn run(config: Config) -> Result<(), String> {
    // Caught from the first moment: until then SIGHUP's default action ends the server, and a
    // start (migrations, the audit tree's backfill) can take a while a logrotate or reload
    // hook does not wait for. One sent meanwhile reloads the certificate once it is read.
    #[cfg(unix)]
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    #[cfg(not(unix))]
    let hangups = None::<()>;
    if config.record_root_checks
        && config.database_url.is_none()
        && !config.data_dir.join("byok.db").exists()
    {
        // Never a new database (and managed key) made by a mistyped path: nothing to record.
        return Err(format!(
            "--record-root-checks: no byok database in {} (give the server's --data-dir, or its --database-url)",
            config.data_dir.display()
        ));
    }
    if let (true, Some(url)) = (config.record_root_checks, &config.database_url) {
        // Asked before the database is opened, which migrates it: a mistyped URL is left as
        // it was, not given byok's tables.
        let ours = Database::started_by_byok(url.expose())
            .await
            .map_err(|e| format!("cannot open the database {}: {e}", url.redacted()))?;
        if !ours {
            return Err(format!(
                "--record-root-checks: {} was never started by byok serve (no managed key check value): give the server's --database-url",
                url.redacted()
            ));
        }
    }
    create_private_dir(&config.data_dir)
        .map_err(|e| format!("cannot create {}: {e}", config.data_dir.display()))?;
    // Held until `run` returns, when the server has stopped.
    let _one_server = match &config.database_url {
        Some(_) => None,
        None => Some(lock_data_dir(&config.data_dir)?),
    };
    let store = match &config.database_url {
        Some(url) => Database::open_with(url.expose(), config.database_pool)
            .await
            .map_err(|e| format!("cannot open the database {}: {e}", url.redacted()))?,
        None => Database::open_dir(&config.data_dir)
            .await
            .map_err(|e| e.to_string())?,
    };
    // The managed key must be the one the database was made with: a missing file is never
    // replaced once orgs exist, and a different key is refused (its check value is stored).
    let stored_check = store
        .meta("managed_key_check")
        .await
        .map_err(|e| e.to_string())?;
    let may_create =
        stored_check.is_none() && !store.has_orgs().await.map_err(|e| e.to_string())?;
    if config.record_root_checks && stored_check.is_none() {
        return Err("--record-root-checks: this database was never started by byok serve (no managed key check value): give the server's --data-dir or --database-url".into());
    }
    if may_create {
        // A database this byok makes holds no root version without a check value: the
        // upgrade pass has nothing to do here, ever (`root_checks.rs`).
        store
            .set_meta(root_checks::DONE, &store::now_ms().to_string())
            .await
            .map_err(|e| e.to_string())?;
    }
    let env_key = std::env::var("BYOK_MANAGED_KEY").ok();
    let (managed, origin) =
        managed::load_or_create(&config.data_dir, env_key.as_deref(), may_create)?;
    let check = managed::check_value(&managed);
    match stored_check {
        Some(c) if c != check => {
            return Err(format!(
                "the managed key ({origin:?}) is not the one this database was made with (check value {c}); restore the right managed.key or BYOK_MANAGED_KEY"
            ));
        }
        Some(_) => {}
        // Claimed, not overwritten: another replica starting on this new database at the same
        // moment with another managed key may have stored its own first, and one of the two
        // would then serve under a key the database does not record.
        None => {
            let stored = store
                .claim_meta("managed_key_check", &check)
                .await
                .map_err(|e| e.to_string())?;
            if stored != check {
                return Err(format!(
                    "another byok serve started on this new database at the same moment with another managed key (check value {stored}); give every replica the same managed.key or BYOK_MANAGED_KEY"
                ));
            }
        }
    }
    let vendor = match (
        std::env::var("BYOK_AWS_ACCESS_KEY_ID"),
        std::env::var("BYOK_AWS_SECRET_ACCESS_KEY"),
    ) {
        (Ok(id), Ok(secret)) => Some(byok_core::kms::aws::request::AwsCredentials::new(
            id,
            secret,
            std::env::var("BYOK_AWS_SESSION_TOKEN").ok(),
            None,
        )),
        _ => None,
    };
    if config.aws_principal_arn.is_none() {
        tracing::warn!(
            "no vendor AWS principal (--aws-principal-arn / BYOK_AWS_PRINCIPAL_ARN): `key policy` is refused until it is set, and customers cannot grant byok their keys"
        );
    }
    if config.danger_aws_endpoint.is_some() {
        tracing::warn!("BYOK_DANGER_AWS_ENDPOINT is set: AWS calls go to a test endpoint");
    }
    let mut kms = KmsSettings::default();
    kms.sources.vendor.aws = vendor;
    kms.sources.vendor.aws_principal = config.aws_principal_arn.clone();
    if let Some(url) = &config.danger_aws_endpoint {
        kms.danger_endpoints.insert("aws".into(), url.clone());
    }
    if let Some(path) = &config.gcp_service_account_file {
        let key = crate::vendor_key::ServiceAccountKey::load(path)?;
        tracing::info!(account = %key.account().client_email, "GCP: the vendor's service account (development; prefer workload identity federation)");
        kms.sources.vendor.gcp = Some(key.account().clone());
        kms.sources.signers.insert("gcp", Arc::new(key));
    }
    if let Some(client_id) = &config.azure_client_id {
        use byok_core::kms::provider::Provider;
        let client_id = &byok_core::kms::azure::Azure
            .parse_role(client_id)
            .map_err(|e| format!("--azure-client-id: {e}"))?;
        let secret = std::env::var("BYOK_AZURE_CLIENT_SECRET")
            .ok()
            .map(zeroize::Zeroizing::new);
        match (&config.azure_certificate_file, secret) {
            (Some(path), _) => {
                let cert = crate::vendor_key::AppCertificate::load(path)?;
                tracing::info!(client_id = %client_id, thumbprint = %cert.thumbprint(), "Azure: the vendor's app, with its certificate");
                kms.sources.signers.insert("azure", Arc::new(cert));
                kms.sources.vendor.azure = Some(byok_core::kms::azure::auth::VendorApp {
                    client_id: client_id.clone(),
                    secret: None,
                });
            }
            (None, Some(secret)) => {
                tracing::warn!(client_id = %client_id, "Azure: the vendor's app with a client secret (development only; prefer federated credentials or a certificate)");
                kms.sources.vendor.azure = Some(byok_core::kms::azure::auth::VendorApp {
                    client_id: client_id.clone(),
                    secret: Some(secret),
                });
            }
            (None, None) => {
                return Err("--azure-client-id needs --azure-certificate-file or, for development, BYOK_AZURE_CLIENT_SECRET".into());
            }
        }
    }
    if let Some(url) = &config.danger_azure_endpoint {
        tracing::warn!("BYOK_DANGER_AZURE_ENDPOINT is set: Azure calls go to a test endpoint");
        kms.danger_endpoints.insert("azure".into(), url.clone());
    }
    if let Some(url) = &config.danger_gcp_endpoint {
        tracing::warn!("BYOK_DANGER_GCP_ENDPOINT is set: GCP calls go to a test endpoint");
        kms.danger_endpoints.insert("gcp".into(), url.clone());
    }
    let mut service = Service::new(store, managed, config.unwrap_cache_ttl, kms)?
        .with_outage_retry(config.outage_retry)
        .with_unchecked_roots(config.record_root_checks)
        .with_job_lease(config.job_lease)
        .with_max_stored_keys(config.max_stored_keys)
        .with_signed_heads(&config.data_dir.join("audit-heads"))?;
    if let Some(url) = &config.public_url {
        service = service.with_issuer(url.clone());
    }
    let service = Arc::new(service);
    service
        .refresh_issuer()
        .await
        .map_err(|e| format!("cannot load the OIDC issuer's keys: {e:?}"))?;
    if let Some(url) = &config.public_url {
        tracing::info!(issuer = %url.as_str(), "OIDC issuer: /.well-known/openid-configuration");
    }
    let verifier_key = service
        .load_log_key(&config.log_name)
        .await
        .map_err(|e| format!("cannot load the audit log key: {e:?}"))?;
    tracing::info!(%verifier_key, "audit log verifier key");
    if config.record_root_checks {
        let recorded = record_root_checks(&service).await;
        // As at a stop: rows held in memory would be lost with the process.
        service.write_held_rows().await;
        if let Err(e) = service.sign_pending().await {
            tracing::warn!(error = ?e, "signing audit checkpoints failed");
        }
        return recorded;
    }
    warn_of_unchecked_roots(&service).await?;
    let certificate = match &config.tls {
        Some((cert, key)) => Some(tls::Certificate::load(cert, key)?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let scheme = if certificate.is_some() {
        "https"
    } else {
        "http"
    };
    if certificate.is_none() && !addr.ip().is_loopback() {
        // Only reachable with --insecure-http (Config::resolve refuses it otherwise).
        tracing::warn!(%addr, "byok serves plain HTTP beyond loopback (--insecure-http): only behind a proxy or mesh that terminates TLS");
    }
    let metrics = match config.metrics_listen {
        Some(at) => {
            let l = tokio::net::TcpListener::bind(at)
                .await
                .map_err(|e| format!("cannot listen for metrics on {at}: {e}"))?;
            let at = l.local_addr().map_err(|e| e.to_string())?;
            tracing::info!(%at, "metrics served on their own address");
            Some((l, at))
        }
        None => None,
    };
    // Made last, once nothing before it can fail: it is shown once, just below. Made before
    // a step that then failed (a TLS key refused, an address in use), it would be stored but
    // never shown, and no later start shows another: the operator would be locked out.
    let operator = service
        .bootstrap_operator()
        .await
        .map_err(|e| format!("cannot create the operator token: {e:?}"))?;
    tracing::info!(%addr, %scheme, data_dir = %config.data_dir.display(), database = ?config.database_url, managed_key = ?origin, "byok serving");
    {
        // Standard output, not the logs: the token is shown once, to whoever started the server.
        // One write of all the lines (stdout flushes at each newline): whoever reads the first
        // finds the rest already in the pipe, token included. The text is wiped after.
        // Sized up front, so that no growth leaves a copy of the token behind.
        use std::fmt::Write as _;
        let mut text = zeroize::Zeroizing::new(String::with_capacity(1024));
        let _ = writeln!(
            text,
            "byok {} listening on {scheme}://{addr}",
            env!("CARGO_PKG_VERSION")
        );
        if let Some(token) = &operator {
            let _ = writeln!(
                text,
                "operator token (shown once, store it now): {}",
                token.as_str()
            );
        }
        if let Some((_, at)) = &metrics {
            let _ = writeln!(text, "metrics on http://{at}/metrics");
        }
        let shown = {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes()).and_then(|()| out.flush())
        };
        // A token made but never shown (standard output closed or full) would lock the
        // operator out: no later start shows another. It is deleted, and the start fails.
        if let (Err(e), Some(token)) = (&shown, &operator) {
            let deleted = match service.authenticate(token).await {
                Ok(Some(op)) => service
                    .revoke_token(None, op.grant.id)
                    .await
                    .map(drop)
                    .map_err(|e| format!("{e:?}")),
                Ok(None) => Ok(()),
                Err(e) => Err(format!("{e:?}")),
            };
            return Err(match deleted {
                Ok(()) => format!(
                    "the operator token could not be shown on standard output ({e}), so it was deleted: start again with standard output open"
                ),
                Err(d) => format!(
                    "the operator token could not be shown on standard output ({e}), and deleting it failed ({d}): delete the operator token from the tokens table, then start again"
                ),
            });
        }
    }
    let rate =
        Arc::new(RateLimits::new(config.api.rate).holding_at_most(config.api.request_timeout / 2));
    let router = api::router(service.clone(), &config.api, rate.clone());
    // Over PostgreSQL, other replicas may change what this one holds in memory.
    if let Some(url) = &config.database_url {
        tokio::spawn(crate::service::replicas::follow(
            service.clone(),
            url.expose().to_owned(),
            config.replica_poll,
        ));
    }
    // The work that calls KMSs beside the requests (health checks, jobs): cut and waited for
    // at shutdown, before the rows held in memory are written.
    let background = service.background().clone();
    // Key health is checked periodically, on a task of its own: a pass goes over every org's
    // keys through their KMSs (seconds each when one is down), and must not hold up a resumed
    // job, which runs at once, or the scrub of destroyed keys.
    {
        let service = service.clone();
        let rate = rate.clone();
        let interval = config.key_health_interval;
        background.spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                rate.forget_idle();
                service.forget_stale_credentials();
                if let Err(e) = service.check_health().await {
                    tracing::warn!(error = ?e, "key health check failed");
                }
            }
        });
    }
    // Jobs a crash interrupted resume now, not when the crashed run's leases expire.
    match store::job_leases::forget_on_sqlite(service.store()).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(leases = n, "job leases a stopped run left were dropped"),
        Err(e) => {
            tracing::warn!(error = %e, "dropping the job leases a stopped run left failed; they expire")
        }
    }
    {
        let service = service.clone();
        let interval = config.key_health_interval;
        let job_lease = config.job_lease;
        let jobs_background = background.clone();
        background.spawn(async move {
            let background = jobs_background;
            // Jobs no replica runs (interrupted by a crash, stopped by a KMS failure, or whose
            // replica died and let its lease expire) are looked for twice per lease length.
            let mut jobs = tokio::time::interval(job_lease / 2);
            jobs.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut kicks = service.take_kicks();
            loop {
                let kicked = async {
                    match kicks.as_mut() {
                        Some(k) => k.recv().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    // The first tick fires at once: jobs a restart interrupted resume now.
                    // A long job runs on its own task; a later look skips it (its lease is
                    // live).
                    // Also the write-ahead log's scrub, if one is owed: at the start (a crash
                    // may have left destroyed keys in it) and after one that could not finish.
                    _ = jobs.tick() => {
                        let service = service.clone();
                        background.spawn(async move {
                            if service.store().scrub_owed() {
                                service.store().scrub().await;
                            }
                            let every = job_lease / 2;
                            if let Err(e) = service.resume_jobs(every, interval.max(every)).await {
                                tracing::warn!(error = ?e, "looking for jobs to resume failed");
                            }
                        });
                    }
                    Some(org) = kicked => {
                        // A scope a job waited on was resumed (or a revoke trimmed the job, or
                        // left stored keys to sweep): run it now, not at the next tick.
                        let service = service.clone();
                        background.spawn(async move {
                            service.run_jobs(org).await;
                        });
                    }
                }
            }
        });
    }
    // The issuer's key schedule is read every minute: a successor is made a day before it
    // signs, and keys another replica replaced at once reach this one within the minute.
    if config.public_url.is_some() {
        let service = service.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(
                byok_core::kms::oidc::CHECK_MS,
            ));
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = service.refresh_issuer().await {
                    tracing::warn!(error = ?e, "the OIDC issuer's key schedule failed");
                }
            }
        });
    }
    // Grown audit logs get a signed checkpoint periodically (withdrawals sign at once), after
    // the rows held in memory (calls cut off mid-way, credential exchanges) are written: a
    // checkpoint covers every call made before it. Stopped before the shutdown's own write
    // and signing (rows it took and had not written go back as it is cut).
    {
        let service = service.clone();
        let every = config.checkpoint_interval;
        background.spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                service.write_held_rows().await;
                if let Err(e) = service.sign_pending().await {
                    tracing::warn!(error = ?e, "signing audit checkpoints failed");
                }
            }
        });
    }
    reload_on_sighup(certificate.clone(), hangups);
    if let Some((l, _)) = metrics {
        let router = api::metrics_router(service.clone());
        let limits = config.conn;
        tokio::spawn(async move {
            if let Err(e) = listener::serve(l, None, limits, router, shutdown()).await {
                tracing::warn!(error = %e, "metrics listener stopped");
            }
        });
    }
    let served = listener::serve(listener, certificate, config.conn, router, shutdown()).await;
    // Requests drained and the rest cut (or the listener failed); jobs and health checks cut
    // too, each call they had under way unwound into the rows held in memory, which would be
    // lost with the process.
    background.stop().await;
    let held = service.write_held_rows().await;
    if let Err(e) = service.sign_pending().await {
        tracing::warn!(error = ?e, "signing audit checkpoints at shutdown failed");
    }
    tracing::info!(orgs = held, "held audit rows written; stopped");
    served
}

/// Reads the certificate and key again on every SIGHUP (after a renewal): new connections get
/// the new certificate, open ones keep theirs; a failed reload keeps the old one and says why.
/// Without TLS there is nothing to reload, but SIGHUP is still caught: its default action
/// would end the server (a logrotate or reload hook sends it to every service).
#[cfg(unix)]
fn reload_on_sighup(
    cert: Option<Arc<tls::Certificate>>,
    hangups: Option<tokio::signal::unix::Signal>,
) {
    tokio::spawn(async move {
        let Some(mut hup) = hangups else {
            tracing::warn!("cannot listen for SIGHUP: the certificate will not be reloaded");
            return;
        };
        while hup.recv().await.is_some() {
            match cert.as_ref().map(|c| c.reload()) {
                None => tracing::info!("SIGHUP: no TLS certificate to reload"),
                Some(Ok(())) => tracing::info!("TLS certificate reloaded"),
                Some(Err(e)) => {
                    tracing::error!(error = %e, "TLS certificate reload failed: still serving the previous one")
                }
            }
        }
    });
}

#[cfg(not(unix))]
fn reload_on_sighup(_cert: Option<Arc<tls::Certificate>>, _hangups: Option<()>) {}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
