/// One explicit step of a simulation: what the seeded generator decided, recorded
/// so a failing run can be replayed and shrunk. Replicas are indices, cases are
/// indices in the order they were opened; a step that no longer makes sense (its
/// case was never opened in a shrunk trace) does nothing.
public enum SimulationStep: Codable, Hashable, Sendable {
    /// Time passes on every clock.
    case advance(milliseconds: UInt64)
    /// A replica opens a case with these other institutions as participants.
    case open(replica: Int, participants: [Int])
    /// A replica edits a case: each operation is (kind, argument).
    case edit(replica: Int, caseIndex: Int, operations: [Edit])
    /// A replica adds or removes an institution's participation.
    case membership(replica: Int, caseIndex: Int, institution: Int, add: Bool)
    /// A replica records the household's consent for an institution, or its withdrawal.
    case consent(replica: Int, caseIndex: Int, institution: Int, grant: Bool)
    /// Two replicas sync; the connection breaks after `cutAfter` messages if given.
    case sync(a: Int, b: Int, cutAfter: Int?)
    /// Changes the source holds for the target's institution are delivered as a
    /// bundle: the last `take`, each repeated if its bit in `repeats` is set, in the
    /// order given by `order` (indices), applied `batch` at a time.
    case bundle(source: Int, target: Int, take: Int, repeats: [Bool], order: [Int], batch: Int)
    /// The replicas split into groups (a group number per replica), or heal ([]).
    case partition(groups: [Int])
    /// A replica restarts, after logging a page from its next peer without a checkpoint.
    case crash(replica: Int)
    /// A replica's clock runs this many milliseconds ahead (0 fixes it).
    case skew(replica: Int, milliseconds: Int64)
    /// Two replicas sync and, after `after` messages, `editor` (0: `a`, 1: `b`)
    /// edits a case through its store while its node serves (as `casemesh case note`
    /// beside a running `serve`).
    case syncWhileEditing(a: Int, b: Int, after: Int, editor: Int, caseIndex: Int, operations: [Edit])
    /// `a` syncs with `b` as a hostile relay: in the first batch it serves that
    /// carries a change another replica wrote, it alters the change (`resign`:
    /// covers it with a seal of its own instead).
    case relaySync(a: Int, b: Int, resign: Bool)
    /// The consortium CA revokes a replica's certificate (a stolen laptop): no node
    /// accepts its connections or its seals from then on; it goes on writing.
    case revoke(replica: Int)

    /// One field write of an edit.
    public struct Edit: Codable, Hashable, Sendable {
        public var kind: String
        public var argument: String
    }
}
