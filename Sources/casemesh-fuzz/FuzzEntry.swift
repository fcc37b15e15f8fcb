import CaseMeshFuzzTargets
import Foundation

#if FUZZING
    /// libFuzzer's entry point; the target comes from `CASEMESH_FUZZ_TARGET`.
    @_cdecl("LLVMFuzzerTestOneInput")
    public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
        FuzzEntry.target.run(Array(UnsafeBufferPointer(start: data, count: size)))
        return 0
    }

    @_silgen_name("LLVMFuzzerRunDriver")
    func runFuzzerDriver(
        _ argc: UnsafeMutablePointer<CInt>,
        _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
        _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
    ) -> CInt

    /// SwiftPM links an executable's `main` to this symbol: hand the process to
    /// libFuzzer's driver (its own `main` is then not linked).
    @_cdecl("casemesh_fuzz_main")
    public func fuzzMain(
        _ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
    ) -> CInt {
        var count = argc
        var arguments = argv
        return runFuzzerDriver(&count, &arguments) { data, size in fuzzOneInput(data, size) }
    }
#else
    /// Without the fuzzer: replays inputs, `casemesh-fuzz TARGET FILE...`, and exits
    /// non-zero only if one of them traps (which ends the process).
    @main struct ReplayMain {
        static func main() {
            let arguments = CommandLine.arguments.dropFirst()
            if arguments.first == "--write-seeds", let directory = arguments.dropFirst().first {
                do {
                    try FuzzSeeds.write(into: directory)
                } catch {
                    FileHandle.standardError.write(Data("cannot write seeds: \(error)\n".utf8))
                    exit(1)
                }
                return
            }
            guard let name = arguments.first, let target = FuzzTarget(rawValue: name) else {
                let names = FuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")
                FileHandle.standardError.write(Data("usage: casemesh-fuzz TARGET FILE... (targets: \(names))\n".utf8))
                exit(2)
            }
            for path in arguments.dropFirst() {
                let bytes = [UInt8](FileManager.default.contents(atPath: path) ?? Data())
                print("\(path): \(target.run(bytes) ? "accepted" : "refused")")
            }
        }
    }
#endif

enum FuzzEntry {
    static let target: FuzzTarget = {
        let name = ProcessInfo.processInfo.environment["CASEMESH_FUZZ_TARGET"] ?? "frames"
        return FuzzTarget(rawValue: name) ?? .frames
    }()
}
