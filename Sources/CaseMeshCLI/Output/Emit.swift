import CaseMeshOperations
import Foundation

/// Prints a line and flushes, so a parent process reading a pipe sees it at once.
func emit(_ line: String) {
    print(Terminal.safe(line))
    fflush(nil)
}
