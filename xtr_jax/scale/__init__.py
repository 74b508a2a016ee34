"""Scale-out: multi-host training helpers, Beam pipelines, sharded token indexes."""
