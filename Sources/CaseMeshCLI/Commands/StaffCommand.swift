import ArgumentParser
import CaseMeshOperations
import CaseMeshStore
import Foundation

/// Staff accounts of this node, for the HTTP API and the web app.
struct StaffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "staff", abstract: "Manage the staff accounts that log in to this node's HTTP API.",
        subcommands: [Add.self, List.self, Disable.self, Passwd.self])

    /// The password, from standard input (never a flag: it would stay in shell
    /// history and the process list).
    static func readPassword() throws -> String {
        guard let line = readLine(strippingNewline: true), !line.isEmpty else {
            throw CLIError(
                message:
                    "give the password on standard input (for example: printf '%s\\n' \"$PW\" | casemesh staff add ...)"
            )
        }
        return line
    }

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create an account; the password is read from standard input.")
        @OptionGroup var store: StoreOptions
        @Argument(help: "The login name (2-32 lowercase letters, digits, '.', '_', '-').") var username: String
        @Option(help: "caseworker, supervisor or admin.") var role: String
        @Option(help: "The person's name as screens and the access log show it (for example 김민지).") var name: String?

        func run() throws {
            guard let role = StaffRole(rawValue: role) else {
                throw CLIError(message: "--role must be caseworker, supervisor or admin")
            }
            let store = try store.openStore()
            let password = try StaffCommand.readPassword()
            try CLIError.wrap {
                try store.addStaff(username: username, displayName: name ?? username, role: role, password: password)
            }
            emit("added \(username) (\(role.rawValue))")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the accounts.")
        @OptionGroup var store: StoreOptions
        @OptionGroup var output: OutputOptions

        func run() throws {
            let accounts = try CLIError.wrap { try store.openStore().staffAccounts() }
            if output.json {
                emit(
                    JSONValue.array(
                        accounts.map {
                            .object([
                                "username": .string($0.username), "name": .string($0.displayName),
                                "role": .string($0.role.rawValue), "disabled": .bool($0.disabled),
                            ])
                        }
                    ).text)
            } else if accounts.isEmpty {
                emit("no staff accounts yet: casemesh staff add USERNAME --role admin")
            } else {
                for account in accounts {
                    emit(
                        "\(account.username)  \(account.role.rawValue)  \(account.displayName)\(account.disabled ? "  (disabled)" : "")"
                    )
                }
            }
        }
    }

    struct Disable: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Disable an account and end its sessions.")
        @OptionGroup var store: StoreOptions
        @Argument(help: "The login name.") var username: String

        func run() throws {
            try CLIError.wrap { try store.openStore().disableStaff(username) }
            emit("disabled \(username); its sessions have ended")
        }
    }

    struct Passwd: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Set a new password (read from standard input); ends the account's sessions and lifts a lock.")
        @OptionGroup var store: StoreOptions
        @Argument(help: "The login name.") var username: String

        func run() throws {
            let store = try store.openStore()
            let password = try StaffCommand.readPassword()
            try CLIError.wrap { try store.setStaffPassword(username, password: password) }
            emit("password of \(username) set; its sessions have ended")
        }
    }
}

/// API keys of intake channels (`POST /api/v1/intake`).
struct IntakeKeyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "intake-key",
        abstract: "Manage the API keys of intake channels (KakaoTalk, hotlines, IoT alerts).",
        subcommands: [Add.self, List.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create (or replace) a channel's key; prints it once (only its hash is kept).")
        @OptionGroup var store: StoreOptions
        @Argument(help: "The channel's name, for example kakao-uijeongbu.") var channel: String

        func run() throws {
            let key = try CLIError.wrap { try store.openStore().addIntakeKey(channel: channel) }
            emit(key)
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the channels that have a key.")
        @OptionGroup var store: StoreOptions

        func run() throws {
            for channel in try CLIError.wrap({ try store.openStore().intakeChannels() }) { emit(channel) }
        }
    }
}
