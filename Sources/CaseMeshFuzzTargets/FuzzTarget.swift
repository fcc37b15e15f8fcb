import CaseMeshCRDT
import CaseMeshModel
import CaseMeshNet
import CaseMeshStore
import CaseMeshSync
import NIOCore

/// The inputs a peer, a file or a bundle controls, each as a fuzz target: every
/// input must give a value or a typed error, never a trap.
///
/// Written by hand because it is the project's own decoders that are under test; the
/// harness is libFuzzer (Swift's `-sanitize=fuzzer`), see `scripts/fuzz`.
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// A stream of sync frames through the frame decoder (length prefix, compact
    /// message codec, the connection's string table).
    case frames
    /// One sync message in the canonical encoding.
    case message
    /// One change in the canonical (stored) encoding, then its structure and its seal leaf.
    case change
    /// A change bundle, decoded and imported into an in-memory store.
    case bundle

    /// Runs the target on one input; returns whether the input was accepted (either
    /// way it must return).
    @discardableResult
    public func run(_ bytes: [UInt8]) -> Bool {
        switch self {
        case .frames:
            var decoder = SyncFrameDecoder(maximumFrameBytes: 1 << 20)
            var buffer = ByteBuffer(bytes: bytes)
            var decoded = 0
            while decoded < 1000 {
                do {
                    guard try decoder.decode(buffer: &buffer) != nil else { break }
                    decoded += 1
                } catch {
                    return false
                }
            }
            return decoded > 0
        case .message:
            return (try? SyncMessage(decoding: bytes)) != nil
        case .change:
            guard let change = try? Change(decoding: bytes) else { return false }
            _ = try? change.validateStructure()
            _ = try? CaseSchema.bundled.validate(change)
            _ = try? SealDigest.leaf(ofEncoded: bytes)
            _ = SealDigest.leaf(of: change)
            return true
        case .bundle:
            guard let bundle = try? ChangeBundle(decoding: bytes),
                let store = try? CaseStore.inMemory(
                    replicaID: ReplicaID("dong.office/server"), clock: FixedWallClock(millis: 1_795_392_000_000))
            else { return false }
            var decoded: [(change: Change, body: [UInt8])] = []
            var leaves: [SealLeaf?] = []
            for (index, body) in bundle.changes.enumerated() {
                guard let change = try? Change(decoding: body) else { continue }
                decoded.append((change, body))
                leaves.append(bundle.leaves.indices.contains(index) ? bundle.leaves[index] : nil)
            }
            let report = try? store.apply(
                decoded, batchSize: 64,
                authentication: BundleSeals(
                    leaves: leaves, seals: bundle.seals, sender: bundle.source, certificates: bundle.certificates))
            _ = try? store.purgeUnentitledCases()
            return report != nil
        }
    }
}
