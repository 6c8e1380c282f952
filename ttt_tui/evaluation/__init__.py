"""``ttt-tui eval``: Figure 5 over a data set. ``inputs`` turns files, folders and manifests into one ordered
list and cuts it into shards; ``runner`` runs each file of a shard as an ordinary run (its own report folder,
resumable), on torchrun ranks or SLURM array tasks; ``aggregate`` reads the finished runs' logs and writes the
data set's answer (eval.json, eval.txt, eval_layer<L>.png)."""
