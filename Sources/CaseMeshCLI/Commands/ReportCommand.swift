import ArgumentParser
import CaseMeshOperations
import CaseMeshStore
import Foundation

/// `casemesh report monthly`: the institution's monthly figures and the privacy
/// officer's access review, as JSON or CSV files.
struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report", abstract: "Monthly figures of the institution's case management.",
        subcommands: [Monthly.self, Consortium.self])

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
            try ReportCommand.write(report, csv: csv)
        }
    }

    struct Consortium: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The consortium's monthly figures, from the member institutions' monthly reports.",
            discussion: """
                Give each institution's `casemesh report monthly --month M` JSON. A case shared among several                 institutions counts once, in the report of the institution that leads it (each report's 'led'                 figures are summed). The access review stays with each institution.
                """)

        @Option(help: "The month, YYYY-MM (Asia/Seoul).") var month: String
        @Option(help: "Write the CSV files into this directory.") var csv: String?
        @Argument(help: "The institutions' monthly report files (JSON).") var files: [String]

        func run() throws {
            var reports: [[String: Any]] = []
            for file in files {
                guard let data = FileManager.default.contents(atPath: file), data.count <= 16 << 20,
                    let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
                else { throw CLIError(message: "\(file) is not a monthly report (JSON, at most 16 MiB)") }
                reports.append(object)
            }
            let report: MonthlyReport
            do {
                report = try MonthlyReport.consortium(month: month, reports: reports)
            } catch let refusal as CaseOperations.Refusal {
                throw CLIError(message: refusal.message)
            }
            try ReportCommand.write(report, csv: csv)
        }
    }

    /// Prints the report as JSON, or writes its CSV files into `csv`.
    static func write(_ report: MonthlyReport, csv: String?) throws {
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
