import ArgumentParser
struct DemoCommand: ParsableCommand { static let configuration = CommandConfiguration(commandName: "demo") }
struct BenchCommand: ParsableCommand { static let configuration = CommandConfiguration(commandName: "bench") }
