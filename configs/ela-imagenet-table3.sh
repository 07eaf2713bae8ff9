#!/usr/bin/env bash
# ELA Table 3 on ImageNet-1K: per-epoch training time of ResNet-50/101 with MRLA-B, MRLA-L and ELA,
# one torchrun DDP job per model (see docs/backbones.md, "ImageNet training with torchrun").
#
#   IMAGENET=/data/imagenet GPUS=8 configs/ela-imagenet-table3.sh            # MRLA-B and MRLA-L rows
#   IMAGENET=/data/imagenet GPUS=8 MODELS="resnet50-mrla-b" EPOCHS=1 configs/ela-imagenet-table3.sh
#
# Recipe (He et al. 2016, as ELA and MRLA state): SGD, lr 0.1 for a global batch of 256 (scaled
# linearly with the batch), momentum 0.9, weight decay 1e-4, 100 epochs (ELA), cosine schedule,
# random-resized 224 crops + flips (the imagenet:DIR loader). Each rank gets BATCH / GPUS images.
# Per-epoch times are in each run's log and OUT/results.json.
#
# Rows: MRLA-B and MRLA-L. The ELA row needs ELA's layer skipping during training
# (layerwise.ela.train_ela, run by `layerwise ela`), which has no torchrun entry point yet;
# `layerwise train --model resnet50-ela` would train plain MRLA-B, so this script refuses it.
set -euo pipefail
: "${IMAGENET:?set IMAGENET to the folder holding train/<wnid>/ and val/<wnid>/}"
GPUS=${GPUS:-8}
EPOCHS=${EPOCHS:-100}
BATCH=${BATCH:-256}                        # global batch
OUT=${OUT:-runs/ela-table3}
MODELS=${MODELS:-"resnet50-mrla-b resnet50-mrla-l resnet101-mrla-b resnet101-mrla-l"}
if (( BATCH % GPUS )); then echo "BATCH ($BATCH) must be a multiple of GPUS ($GPUS)" >&2; exit 2; fi
PER_RANK=$(( BATCH / GPUS ))
LR=$(python -c "print(0.1 * $BATCH / 256)")

for model in $MODELS; do
  if [[ $model == *-ela ]]; then
    echo "$model: ELA's skipping is not run by 'layerwise train' under torchrun; see the header" >&2; exit 2
  fi
  torchrun --standalone --nproc_per_node="$GPUS" -m layerwise train \
    --model "$model" --dataset "imagenet:$IMAGENET" --size 224 --device cuda \
    --epochs "$EPOCHS" --batch-size "$PER_RANK" --optimizer sgd --lr "$LR" --weight-decay 1e-4 \
    --schedule cosine --out "$OUT/$model"
done
