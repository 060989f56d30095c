//! The stand-in through a TDS client no one here wrote: pymssql, whose wheel carries
//! FreeTDS. At `tds_version="7.4"` FreeTDS sets fExtension in LOGIN7 and sends a
//! FeatureExt block (UTF8_SUPPORT), as Microsoft's ODBC Driver 18 does too; the login
//! must still check the password (MS-TDS 2.2.6.4) and answer with FEATUREEXTACK
//! (MS-TDS 2.2.7.11).
//!
//! The Python comes from `CDC_SIDECAR_PYTHON`, which `scripts/test` sets after
//! installing pymssql into `target/py-clients`; without it the venv there, then
//! `python3`, are tried. A Python without pymssql fails the test: it never passes
//! silently.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use testkit::mssql::engine::Engine;
use testkit::mssql::wire::{MssqlServer, MssqlServerConfig};

const USER: &str = "py_client";
/// Non-ASCII on purpose: FreeTDS converts it from UTF-8 to UCS-2 before obfuscating.
const PASSWORD: &str = "Py-Cl1ent!pässword";
const DATABASE: &str = "Shop";
/// pymssql's login_timeout and timeout, and the deadline for the whole script.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(60);

/// Connects with pymssql at TDS 7.4 and prints one JSON line: the results of the
/// queries, or the login error's number and text.
const SCRIPT: &str = r#"
import json, sys
import pymssql

port, user, password, database = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
try:
    conn = pymssql.connect(server="127.0.0.1", port=port, user=user, password=password,
                           database=database, tds_version="7.4", login_timeout=20, timeout=20)
except pymssql.OperationalError as e:
    number, message = e.args[0] if isinstance(e.args[0], tuple) else e.args
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    print(json.dumps({"error": number, "message": message}))
    sys.exit(0)
cur = conn.cursor()
cur.execute("SELECT 1")
one = cur.fetchall()
cur.execute("SELECT DB_NAME()")
db = cur.fetchone()[0]
cur.execute("SELECT Id, Customer, Total FROM dbo.Orders ORDER BY Id")
orders = [[i, c, str(t) if t is not None else None] for (i, c, t) in cur.fetchall()]
cur.execute("SELECT Customer FROM dbo.Orders WHERE Id = %s", (2,))
by_id = cur.fetchone()[0]
conn.close()
print(json.dumps({"select_1": one, "db": db, "orders": orders, "by_id": by_id,
                  "versions": [pymssql.__version__, pymssql.get_dbversion()]}))
"#;

/// The Python that runs [`SCRIPT`].
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("CDC_SIDECAR_PYTHON") {
        return p.into();
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/py-clients/bin/python3");
    if venv.exists() {
        return venv;
    }
    "python3".into()
}

/// Fails the test, with what to do, when the Python cannot import pymssql.
fn require_pymssql(python: &PathBuf) {
    let ok = std::process::Command::new(python)
        .args(["-c", "import pymssql"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} cannot import pymssql. Run scripts/test (it installs pymssql into target/py-clients \
         and exports CDC_SIDECAR_PYTHON), or point CDC_SIDECAR_PYTHON at a Python that has pymssql.",
        python.display()
    );
}

/// An engine with login `py_client` and `Shop.dbo.Orders` holding three rows.
async fn start() -> MssqlServer {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let engine = Engine::new();
    engine.execute("master", "CREATE DATABASE Shop;").expect("create Shop");
    engine
        .execute(
            "Shop",
            &format!(
                "CREATE LOGIN [{USER}] WITH PASSWORD = N'{PASSWORD}';
                 CREATE USER [{USER}] FOR LOGIN [{USER}];
                 GRANT SELECT ON SCHEMA::[dbo] TO [{USER}];"
            ),
        )
        .expect("create the login");
    engine
        .execute(
            "Shop",
            "CREATE TABLE dbo.Orders (Id int NOT NULL PRIMARY KEY, Customer nvarchar(100) NOT NULL, Total decimal(10,2) NULL);
             INSERT INTO dbo.Orders (Id, Customer, Total) VALUES (1, N'Ada', 12.50), (2, N'Zoë', NULL), (3, N'Grace', 7.00);",
        )
        .expect("create Orders");
    MssqlServer::start(Arc::new(engine), MssqlServerConfig::default())
        .await
        .expect("server starts")
}

/// Runs [`SCRIPT`] against `server` and parses its JSON line.
async fn run_pymssql(server: &MssqlServer, user: &str, password: &str) -> serde_json::Value {
    let python = python();
    require_pymssql(&python);
    let child = tokio::process::Command::new(&python)
        .args(["-c", SCRIPT])
        .arg(server.addr().port().to_string())
        .args([user, password, DATABASE])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start python");
    let out = tokio::time::timeout(SCRIPT_DEADLINE, child.wait_with_output())
        .await
        .expect("the pymssql script finishes within the deadline")
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pymssql script failed: {}\n{stdout}\n{stderr}",
        out.status
    );
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: not JSON: {stdout}\n{stderr}"))
}

#[tokio::test]
async fn login7_with_feature_ext_accepts_the_right_password() {
    let server = start().await;

    let out = run_pymssql(&server, USER, PASSWORD).await;

    assert_eq!(out.get("error"), None, "{out}");
    assert_eq!(out["select_1"], serde_json::json!([[1]]));
    assert_eq!(out["db"], DATABASE);
    assert_eq!(
        out["orders"],
        serde_json::json!([[1, "Ada", "12.50"], [2, "Zoë", null], [3, "Grace", "7.00"]])
    );
    assert_eq!(out["by_id"], "Zoë");
    eprintln!("pymssql, FreeTDS: {}", out["versions"]);
    server.shutdown().await;
}

#[tokio::test]
async fn login7_with_feature_ext_refuses_a_wrong_password_with_18456() {
    let server = start().await;

    let out = run_pymssql(&server, USER, "Py-Cl1ent!wrong").await;

    assert_eq!(out["error"], 18456, "{out}");
    let message = out["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("Login failed for user '{USER}'.")),
        "{message}"
    );
    server.shutdown().await;
}
