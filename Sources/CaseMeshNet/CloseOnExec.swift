#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Marks every socket this process holds close-on-exec.
///
/// When `serve` crashes, the Swift runtime starts its backtracer as a child
/// process, and a child inherits every descriptor not marked `FD_CLOEXEC`. The
/// listening sockets SwiftNIO and Hummingbird open are not marked, so the
/// backtracer (which may take many seconds to symbolicate) kept the sync and HTTP
/// ports bound, and a supervisor restarting the node failed with "address in
/// use". No listed package sets the flag on sockets it did not open, so this
/// walks `/proc/self/fd` once a listener is bound. It changes nothing for this
/// process; it only keeps the descriptors out of children.
public enum CloseOnExec {
    /// Sets `FD_CLOEXEC` on every open socket descriptor; returns how many it marked.
    @discardableResult
    public static func markSockets() -> Int {
        #if os(Linux)
            guard let directory = opendir("/proc/self/fd") else { return 0 }
            defer { closedir(directory) }
            let own = dirfd(directory)
            var marked = 0
            while let entry = readdir(directory) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
                }
                guard let descriptor = Int32(name), descriptor != own else { continue }
                var status = stat()
                guard fstat(descriptor, &status) == 0, status.st_mode & S_IFMT == S_IFSOCK else { continue }
                let flags = fcntl(descriptor, F_GETFD)
                guard flags >= 0 else { continue }
                if flags & FD_CLOEXEC == 0, fcntl(descriptor, F_SETFD, flags | FD_CLOEXEC) == 0 {
                    marked += 1
                }
            }
            return marked
        #else
            return 0
        #endif
    }
}
