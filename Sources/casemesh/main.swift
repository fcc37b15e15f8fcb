import CaseMeshCLI

CaseMeshCommand.main()
