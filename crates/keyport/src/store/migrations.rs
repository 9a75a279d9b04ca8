//! The migrations of both engines, embedded in the binary. Each engine has
//! its own directory; the DDL differs only in integer widths.

use std::borrow::Cow;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

use super::Engine;

pub(super) fn migrator(engine: Engine) -> Migrator {
    let files: [(i64, &str, &str); 8] = match engine {
        Engine::Sqlite => [
            (
                1,
                "core",
                include_str!("../../migrations/sqlite/0001_core.sql"),
            ),
            (
                2,
                "poll in one statement",
                include_str!("../../migrations/sqlite/0002_poll_in_one_statement.sql"),
            ),
            (
                3,
                "hardening",
                include_str!("../../migrations/sqlite/0003_hardening.sql"),
            ),
            (
                4,
                "retention",
                include_str!("../../migrations/sqlite/0004_retention.sql"),
            ),
            (
                5,
                "key rotation",
                include_str!("../../migrations/sqlite/0005_key_rotation.sql"),
            ),
            (
                6,
                "authorization code",
                include_str!("../../migrations/sqlite/0006_authorization_code.sql"),
            ),
            (
                7,
                "two-step verification",
                include_str!("../../migrations/sqlite/0007_two_step.sql"),
            ),
            (
                8,
                "workspaces, API keys and invitations",
                include_str!("../../migrations/sqlite/0008_workspaces.sql"),
            ),
        ],
        Engine::Postgres => [
            (
                1,
                "core",
                include_str!("../../migrations/postgres/0001_core.sql"),
            ),
            (
                2,
                "poll in one statement",
                include_str!("../../migrations/postgres/0002_poll_in_one_statement.sql"),
            ),
            (
                3,
                "hardening",
                include_str!("../../migrations/postgres/0003_hardening.sql"),
            ),
            (
                4,
                "retention",
                include_str!("../../migrations/postgres/0004_retention.sql"),
            ),
            (
                5,
                "key rotation",
                include_str!("../../migrations/postgres/0005_key_rotation.sql"),
            ),
            (
                6,
                "authorization code",
                include_str!("../../migrations/postgres/0006_authorization_code.sql"),
            ),
            (
                7,
                "two-step verification",
                include_str!("../../migrations/postgres/0007_two_step.sql"),
            ),
            (
                8,
                "workspaces, API keys and invitations",
                include_str!("../../migrations/postgres/0008_workspaces.sql"),
            ),
        ],
    };
    let migrations = files
        .into_iter()
        .map(|(version, name, sql)| {
            Migration::new(
                version,
                Cow::Borrowed(name),
                MigrationType::Simple,
                sql.into_sql_str(),
                false,
            )
        })
        .collect::<Vec<_>>();
    Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    }
}
