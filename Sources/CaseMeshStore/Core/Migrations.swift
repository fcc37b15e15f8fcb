import Foundation
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
        migrator.registerMigration("0004-staff-and-intake") { db in
            try db.execute(sql: String(decoding: PackageResources._004_staff_and_intake_sql, as: UTF8.self))
        }
        migrator.registerMigration("0005-case-summaries") { db in
            // The lines are written by 0007's rebuild, which every upgrade runs after
            // this one (the code writes the columns 0007 adds).
            try db.execute(sql: String(decoding: PackageResources._005_case_summaries_sql, as: UTF8.self))
        }
        migrator.registerMigration("0006-restore-hold") { db in
            try db.execute(sql: String(decoding: PackageResources._006_restore_hold_sql, as: UTF8.self))
        }
        migrator.registerMigration("0007-deadlines-in-listing") { db in
            try db.execute(sql: String(decoding: PackageResources._007_deadlines_in_listing_sql, as: UTF8.self))
            try SummaryRow.rebuildAll(db)
        }
        migrator.registerMigration("0008-listing-index") { db in
            try db.execute(sql: String(decoding: PackageResources._008_listing_index_sql, as: UTF8.self))
        }
        migrator.registerMigration("0009-held-for-newer-schema") { db in
            try db.execute(sql: String(decoding: PackageResources._009_held_for_newer_schema_sql, as: UTF8.self))
        }
        migrator.registerMigration("0010-role-grants") { db in
            // Cases held before have no rows: the writer policy falls back to the
            // current lead and referral target for them (see ApplySession.roleRefusal).
            try db.execute(sql: String(decoding: PackageResources._010_role_grants_sql, as: UTF8.self))
            // The listing's next deadline now includes the monitoring of plan items.
            try SummaryRow.rebuildAll(db)
        }
        return migrator
    }

    /// The store layout this build writes: the number of its last migration.
    static var storeVersion: Int { migrator.migrations.count }

    /// Refuses a store that a newer build migrated: writing to it with this build's
    /// idea of the tables could corrupt what the newer build keeps there.
    static func refuseNewer(_ writer: some DatabaseWriter, directory: String) throws {
        let known = Set(migrator.migrations)
        let applied = try writer.read { db in try migrator.appliedIdentifiers(db) }
        let unknown = applied.subtracting(known)
        guard !unknown.isEmpty else { return }
        let newest = unknown.compactMap { Int($0.prefix(4)) }.max() ?? (storeVersion + 1)
        throw StoreError(
            code: .schemaMismatch,
            message: "the store in \(directory) was upgraded by a newer casemesh (store version \(newest)); this "
                + "casemesh knows store version \(storeVersion): install the newer casemesh to use it")
    }
}
