# Job runners for asr.sh (Kaldi's --cmd interface: [--gpu N] [JOB=1:N] <log> <command>).
# Local parallel jobs by default; on a cluster, point these at your runner (e.g. Kaldi's
# slurm.pl or queue.pl with its config): train_cmd="slurm.pl --config conf/slurm.conf".
export train_cmd="utils/run_local.sh"
export cuda_cmd="utils/run_local.sh"
export decode_cmd="utils/run_local.sh"
