import CaseMeshCLI

await CaseMeshCommand.runFromCommandLine()
