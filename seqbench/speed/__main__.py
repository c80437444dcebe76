from seqbench.speed.run import main

main()
