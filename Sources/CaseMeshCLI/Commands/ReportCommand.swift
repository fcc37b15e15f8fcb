import ArgumentParser
import CaseMeshOperations
import CaseMeshStore
import Foundation

/// `casemesh report monthly`: the institution's monthly figures and the privacy
/// officer's access review, as JSON or CSV files.
struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report", abstract: "Monthly figures of the institution's case management.",
        subcommands: [Monthly.self])

    struct Monthly: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "New reports by channel, cases by stage, deadlines met and missed, referrals, resources, "
                + "closures, and the month's access review.",
            discussion: """
                From every case this node holds. Only counts and account names leave it, no person's data. With \
                --csv DIR, one CSV file per table (UTF-8 with a byte-order mark, Korean headers, so Excel opens \
                them in Korean); otherwise JSON.
                """)

        @OptionGroup var store: StoreOptions
        @Option(help: "The month, YYYY-MM (Asia/Seoul).") var month: String
        @Option(help: "Write the CSV files into this directory.") var csv: String?

        func run() throws {
            let replica = try store.openStore()
            let report: MonthlyReport
            do {
                report = try MonthlyReport.build(store: replica, month: month, now: SystemWallClock().nowMillis())
            } catch let refusal as CaseOperations.Refusal {
                throw CLIError(message: refusal.message)
            } catch let error as StoreError {
                throw CLIError(message: error.message)
            }
            guard let csv else {
                emit(report.json.text)
                return
            }
            do {
                try FileManager.default.createDirectory(atPath: csv, withIntermediateDirectories: true)
                for (name, bytes) in report.csvFiles().sorted(by: { $0.key < $1.key }) {
                    let path = (csv as NSString).appendingPathComponent(name)
                    try Data(bytes).write(to: URL(fileURLWithPath: path), options: .atomic)
                    emit(path)
                }
            } catch {
                throw CLIError(message: "cannot write the CSV files into \(csv): \(error.localizedDescription)")
            }
        }
    }
}
