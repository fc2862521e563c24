#!/bin/bash
# A SLURM job running an align recipe on 2 machines x 8 GPUs (recipes/accelerate/multi-node.yaml).
#   sbatch recipes/accelerate/slurm-multinode.sh recipes/quickstart.yaml
# One task per machine: each starts `accelerate launch`, which starts its 8 processes. The run folder
# must be on shared storage (set output_dir in the recipe if runs/ is not).
#SBATCH --job-name=align
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --time=24:00:00
#SBATCH --output=align-%j.out
set -euo pipefail

RECIPE=${1:?usage: sbatch slurm-multinode.sh RECIPE [KEY=VALUE ...]}
shift
CONFIG=${ALIGN_ACCELERATE_CONFIG:-recipes/accelerate/multi-node.yaml}   # or a sharded preset, edited
GPUS_PER_NODE=8
MAIN_IP=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)

# \$SLURM_NODEID is expanded by each task, so every machine passes its own rank
srun bash -c "python -m accelerate.commands.launch --config_file $CONFIG \
    --num_machines $SLURM_NNODES --num_processes $((SLURM_NNODES * GPUS_PER_NODE)) \
    --machine_rank \$SLURM_NODEID --main_process_ip $MAIN_IP --main_process_port 29500 \
    -m align run $RECIPE $*"
