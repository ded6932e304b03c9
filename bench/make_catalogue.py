#!/usr/bin/env python3
"""A seeded synthetic Portuguese product catalogue for the serving benchmark's text model.

Writes DIR/data/produtos.csv (id, nome, descricao, categoria; a few thousand rows) and DIR/modelci.yml,
the consumer repository's config (tests/consumer/model/modelci.yml: TF-IDF on nome and descricao +
LogisticRegression) pointed at that file, with its stop-word list beside it. Then
`modelci train --config DIR/modelci.yml --out DIR/out` trains the model the benchmark serves.

Usage: python bench/make_catalogue.py DIR [--rows 4000] [--seed 7]
"""
from __future__ import annotations

import argparse
import csv
import random
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONSUMER = ROOT / "tests" / "consumer" / "model"

CATEGORIES = {
    "informática": (["notebook", "mouse", "teclado", "monitor", "roteador", "ssd", "pendrive", "webcam"],
                    ["processador", "memória", "usb", "sem fio", "bluetooth", "polegadas", "gb", "hdmi"]),
    "eletrodomésticos": (["geladeira", "fogão", "micro-ondas", "liquidificador", "aspirador", "ventilador",
                          "cafeteira", "batedeira"],
                         ["litros", "potência", "voltagem", "inox", "frost free", "bivolt", "velocidades"]),
    "moda": (["camiseta", "calça", "vestido", "jaqueta", "tênis", "bermuda", "saia", "blusa"],
             ["algodão", "tamanho", "manga", "jeans", "malha", "estampada", "confortável", "cor"]),
    "esporte": (["bola", "bicicleta", "raquete", "luva", "haltere", "esteira", "mochila", "garrafa"],
                ["treino", "academia", "futebol", "corrida", "resistente", "ajustável", "peso"]),
    "livros": (["romance", "biografia", "dicionário", "manual", "coletânea", "antologia", "guia", "atlas"],
               ["páginas", "autor", "edição", "capa", "editora", "capítulos", "ilustrado", "tradução"]),
    "beleza": (["shampoo", "perfume", "batom", "creme", "sabonete", "condicionador", "máscara", "protetor"],
               ["hidratante", "ml", "fragrância", "pele", "cabelo", "vegano", "fps", "suave"]),
    "brinquedos": (["boneca", "carrinho", "quebra-cabeça", "pelúcia", "blocos", "jogo", "pião", "patinete"],
                   ["infantil", "idade", "peças", "colorido", "educativo", "crianças", "montar", "diversão"]),
    "casa": (["toalha", "travesseiro", "panela", "cortina", "tapete", "luminária", "jogo de cama", "vaso"],
             ["decoração", "banho", "cozinha", "antiaderente", "casal", "sala", "tecido", "cerâmica"]),
}
BRANDS = ["Acme", "Prisma", "Nova", "Horizonte", "Vértice", "Aurora", "Solar", "Tropical", "Delta", "Orion"]
FILLER = ["com", "para", "de", "e", "em", "ideal", "produto", "qualidade", "garantia", "novo", "modelo"]
CONNECT = ["Produto de alta qualidade", "Ideal para o dia a dia", "Acompanha garantia de um ano",
           "Ótimo custo-benefício", "Entrega rápida para todo o Brasil"]


def make_rows(n: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    cats = list(CATEGORIES)
    rows = []
    for i in range(1, n + 1):
        cat = rng.choice(cats)
        items, words = CATEGORIES[cat]
        # a little overlap between categories keeps the task from being trivial
        if rng.random() < 0.15:
            words = words + CATEGORIES[rng.choice(cats)][1]
        nome = f"{rng.choice(items).capitalize()} {rng.choice(BRANDS)} {rng.choice(words)} {rng.randint(1, 99)}"
        desc = [rng.choice(CONNECT) + ":"]
        for _ in range(rng.randint(8, 24)):
            desc.append(rng.choice(words) if rng.random() < 0.55 else rng.choice(FILLER))
        rows.append({"id": str(i), "nome": nome, "descricao": " ".join(desc) + ".", "categoria": cat})
    return rows


def write(out: Path, rows: int = 4000, seed: int = 7) -> Path:
    """The catalogue and its config in `out`; returns the config's path."""
    (out / "data").mkdir(parents=True, exist_ok=True)
    with open(out / "data" / "produtos.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["id", "nome", "descricao", "categoria"])
        w.writeheader()
        w.writerows(make_rows(rows, seed))
    shutil.copy2(CONSUMER / "stopwords-pt.txt", out / "stopwords-pt.txt")
    config = (CONSUMER / "modelci.yml").read_text(encoding="utf-8")
    if "files: [data/produtos.csv]" not in config:
        raise SystemExit(f"{CONSUMER / 'modelci.yml'}: data.files changed; update bench/make_catalogue.py")
    (out / "modelci.yml").write_text(config, encoding="utf-8")  # same relative data path
    return out / "modelci.yml"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--rows", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    print(write(Path(a.dir), a.rows, a.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
