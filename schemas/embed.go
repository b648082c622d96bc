package schemas

import "embed"

// Files holds the demo feature file (demo.yaml) and the Avro schemas it names
// (transaction.avsc, login.avsc), at the root of the FS. `featurepipe dev`
// loads its configuration from here, so the demo needs no files on disk;
// Load(Files, "transaction.avsc") parses one of the schemas.
//
//go:embed *.avsc demo.yaml
var Files embed.FS
