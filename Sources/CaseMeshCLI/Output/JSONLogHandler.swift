import Foundation
import Logging
import Synchronization

/// One JSON object per log line on standard error (`--log-format json`), for journald
/// or a log collector: `{"ts":…,"level":…,"label":…,"message":…,"meta":{…}}`.
///
/// swift-log ships only a plain-text stream handler, hence this one. Log messages
/// and metadata carry replica IDs, case IDs, counts and reasons, never personal
/// data: case contents are never logged, by the node's own rule.
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    private static let output = Mutex<Void>(())

    init(label: String) { self.label = label }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        var object: [String: Any] = [
            "ts": ISO8601DateFormatter().string(from: Date()), "level": event.level.rawValue, "label": label,
            "message": event.message.description,
        ]
        if !merged.isEmpty { object["meta"] = merged.mapValues { "\($0)" } }
        guard
            var line = try? JSONSerialization.data(
                withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        else { return }
        line.append(0x0A)
        Self.output.withLock { _ in FileHandle.standardError.write(line) }
    }
}
