from seqbench.bench.run import main

main()
