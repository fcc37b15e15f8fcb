import GRDB

/// The store's schema migrations, registered in order from `schema/migrations/`.
///
/// - Important: A shipped migration is never edited; a change to the store's layout
///   is a new migration appended here.
enum Migrations {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("0001-initial") { db in
            try db.execute(sql: String(decoding: PackageResources._001_initial_sql, as: UTF8.self))
        }
        migrator.registerMigration("0002-consent-and-purge") { db in
            try db.execute(sql: String(decoding: PackageResources._002_consent_and_purge_sql, as: UTF8.self))
        }
        migrator.registerMigration("0003-departures-and-deliveries") { db in
            try db.execute(sql: String(decoding: PackageResources._003_departures_and_deliveries_sql, as: UTF8.self))
        }
        return migrator
    }
}
