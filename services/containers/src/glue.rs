//! Athena views in a Glue database, through aws-sdk-glue. A view is a
//! Glue table of type `VIRTUAL_VIEW` whose original text is the Presto
//! view document Athena reads. Glue has no transaction over several
//! tables: the views of one remap are switched one after the other, and
//! when one fails those already switched are put back as they were.

use aws_sdk_glue::error::ProvideErrorMetadata;
use aws_sdk_glue::types::{Column, StorageDescriptor, TableInput};
use aws_sdk_glue::Client;
use sluice_core::views::{check_request, plan, Plan, ViewError, ViewRequest};

/// What Glue holds of a table or view: its columns (name and type) and,
/// for a view, the input that recreates it.
struct Found {
    columns: Vec<(String, String)>,
    input: TableInput,
}

pub async fn remap(
    client: &Client,
    database: &str,
    requests: &[ViewRequest],
) -> Result<Vec<Plan>, ViewError> {
    let mut plans = Vec::new();
    let mut work = Vec::new();
    for r in requests {
        // Views live in the container's database; a target may name
        // another (`database.table`).
        if r.view.contains('.') {
            return Err(ViewError::Unsupported(format!(
                "view `{}`: a Glue container's views live in its database `{database}`; name them without one",
                r.view
            )));
        }
        // Glue folds names to lower case: `Orders` and `orders` are one.
        check_request(
            &r.view.to_ascii_lowercase(),
            &r.target.to_ascii_lowercase(),
            database,
        )?;
        let view = get(client, database, &r.view).await?;
        let (target_db, target_name) = r.target.split_once('.').unwrap_or((database, &r.target));
        let target = get(client, target_db, target_name).await?;
        let names = |f: &Option<Found>| {
            f.as_ref()
                .map(|f| f.columns.iter().map(|c| c.0.clone()).collect::<Vec<_>>())
        };
        let p = plan(
            &r.view,
            &r.target,
            database,
            r.columns.as_deref(),
            names(&view).as_deref(),
            names(&target).as_deref(),
        )?;
        let types = target.map(|t| t.columns).unwrap_or_default();
        work.push((view_input(database, &p, &types), view.map(|v| v.input)));
        plans.push(p);
    }
    let mut done: Vec<(String, Option<TableInput>)> = Vec::new();
    for (input, before) in work {
        let name = input.name().to_owned();
        let result = if before.is_some() {
            client
                .update_table()
                .database_name(database)
                .table_input(input)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| refusal(e.into_service_error()))
        } else {
            client
                .create_table()
                .database_name(database)
                .table_input(input)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| refusal(e.into_service_error()))
        };
        if let Err((refused, e)) = result {
            undo(client, database, done).await;
            let message = format!("Glue refused view `{name}`: {e}");
            return Err(if refused {
                ViewError::Refused(message)
            } else {
                ViewError::Unavailable(message)
            });
        }
        done.push((name, before));
    }
    Ok(plans)
}

/// Put back the views already switched by a remap that failed part-way.
async fn undo(client: &Client, database: &str, done: Vec<(String, Option<TableInput>)>) {
    for (name, before) in done.into_iter().rev() {
        let result = match before {
            Some(input) => client
                .update_table()
                .database_name(database)
                .table_input(input)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            None => client
                .delete_table()
                .database_name(database)
                .name(&name)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        };
        if let Err(e) = result {
            eprintln!("sluice: could not put Glue view `{database}.{name}` back: {e}");
        }
    }
}

async fn get(client: &Client, database: &str, name: &str) -> Result<Option<Found>, ViewError> {
    match client
        .get_table()
        .database_name(database)
        .name(name)
        .send()
        .await
    {
        Ok(answer) => {
            let Some(table) = answer.table else {
                return Ok(None);
            };
            let columns: Vec<(String, String)> = table
                .storage_descriptor()
                .map(|sd| {
                    sd.columns()
                        .iter()
                        .map(|c| {
                            (
                                c.name().to_owned(),
                                c.r#type().unwrap_or("string").to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut input = TableInput::builder()
                .name(table.name())
                .set_table_type(table.table_type().map(str::to_owned))
                .set_view_original_text(table.view_original_text().map(str::to_owned))
                .set_view_expanded_text(table.view_expanded_text().map(str::to_owned))
                .set_parameters(table.parameters().cloned())
                .set_storage_descriptor(table.storage_descriptor().cloned());
            if let Some(d) = table.description() {
                input = input.description(d);
            }
            let input = input
                .build()
                .map_err(|e| ViewError::Unavailable(e.to_string()))?;
            Ok(Some(Found { columns, input }))
        }
        Err(e) => {
            let e = e.into_service_error();
            if e.is_entity_not_found_exception() {
                Ok(None)
            } else {
                Err(ViewError::Unavailable(format!(
                    "Glue GetTable `{database}.{name}`: {e}"
                )))
            }
        }
    }
}

/// The Glue table input of an Athena view selecting `plan.columns` from
/// `plan.target`.
fn view_input(database: &str, plan: &Plan, types: &[(String, String)]) -> TableInput {
    let type_of = |c: &str| {
        types
            .iter()
            .find(|(n, _)| n == c)
            .map_or("string", |(_, t)| t.as_str())
            .to_owned()
    };
    let presto = serde_json::json!({
        "originalSql": select(database, plan),
        "catalog": "awsdatacatalog",
        "schema": database,
        "columns": plan.columns.iter().map(|c| serde_json::json!({
            "name": c, "type": presto_type(&type_of(c)),
        })).collect::<Vec<_>>(),
        "owner": "sluice",
        "runAsInvoker": false,
    });
    let columns: Vec<Column> = plan
        .columns
        .iter()
        .filter_map(|c| Column::builder().name(c).r#type(type_of(c)).build().ok())
        .collect();
    TableInput::builder()
        .name(&plan.view)
        .table_type("VIRTUAL_VIEW")
        .view_original_text(format!(
            "/* Presto View: {} */",
            base64(presto.to_string().as_bytes())
        ))
        .view_expanded_text("/* Presto View */")
        .parameters("presto_view", "true")
        .parameters("comment", "Presto View")
        .parameters("sluice.target", &plan.target)
        .storage_descriptor(
            StorageDescriptor::builder()
                .set_columns(Some(columns))
                .build(),
        )
        .build()
        .expect("a view input has a name")
}

/// Whether Glue refused the call for good (invalid input, or a database
/// that does not exist), and what it said; anything else (throttling,
/// timeouts...) is worth retrying.
fn refusal<E: ProvideErrorMetadata + std::fmt::Display>(e: E) -> (bool, String) {
    let refused = matches!(
        e.code(),
        Some("InvalidInputException" | "EntityNotFoundException")
    );
    (refused, e.to_string())
}

/// The view's query: `plan.columns` from `plan.target`. Every name is
/// quoted, a `"` in it doubled: column names come from the Glue catalog,
/// and one like `id" FROM "finance"."ledger" UNION ALL SELECT "x` must
/// stay one column's name, not become SQL.
fn select(database: &str, plan: &Plan) -> String {
    let (target_db, target_name) = plan
        .target
        .split_once('.')
        .unwrap_or((database, &plan.target));
    let columns: Vec<String> = plan.columns.iter().map(|c| quote(c)).collect();
    format!(
        "SELECT {} FROM {}.{}",
        columns.join(", "),
        quote(target_db),
        quote(target_name)
    )
}

/// A Presto identifier: in double quotes, each `"` doubled.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The Presto (Athena) spelling of a Hive column type.
fn presto_type(hive: &str) -> String {
    match hive {
        "string" => "varchar".into(),
        "int" => "integer".into(),
        "long" => "bigint".into(),
        other => other.into(),
    }
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The query's text outside quoted names, and the names, unquoted.
    fn tokens(sql: &str) -> (String, Vec<String>) {
        let (mut bare, mut names) = (String::new(), Vec::new());
        let mut chars = sql.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '"' {
                bare.push(c);
                continue;
            }
            let mut name = String::new();
            loop {
                match chars.next().expect("a closing quote") {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        name.push('"');
                    }
                    '"' => break,
                    c => name.push(c),
                }
            }
            bare.push('?');
            names.push(name);
        }
        (bare, names)
    }

    #[test]
    fn hostile_names_stay_names_in_the_view_query() {
        let hostile = r#"id" FROM "finance"."ledger_secret" UNION ALL SELECT "x"#;
        let cases = [
            (
                "views",
                "orders_v2",
                vec!["id".to_owned(), hostile.to_owned()],
            ),
            ("views", r#"fin"."ledger"--"#, vec!["id".to_owned()]),
            (
                r#"db" ; DROP TABLE "t"#,
                "orders",
                vec![r#"a""b"#.to_owned()],
            ),
            (
                "views",
                r#"other" . "t"#,
                vec![r#"""#.to_owned(), "".to_owned()],
            ),
        ];
        for (database, target, columns) in cases {
            let plan = Plan {
                view: "v".into(),
                target: target.into(),
                columns: columns.clone(),
                previous_columns: None,
                drop_first: false,
            };
            let sql = select(database, &plan);
            let (bare, names) = tokens(&sql);
            let placeholders = vec!["?"; columns.len()].join(", ");
            // Exactly one FROM, of the intended table.
            assert_eq!(bare, format!("SELECT {placeholders} FROM ?.?"), "{sql}");
            let (db, table) = target.split_once('.').unwrap_or((database, target));
            let mut want = columns;
            want.extend([db.to_owned(), table.to_owned()]);
            assert_eq!(names, want, "{sql}");
        }
    }

    #[test]
    fn base64_is_the_standard_alphabet_with_padding() {
        assert_eq!(super::base64(b"Presto"), "UHJlc3Rv");
        assert_eq!(super::base64(b"ab"), "YWI=");
        assert_eq!(super::base64(b"a"), "YQ==");
    }
}
