package org.fieldvault.bench;

import java.io.File;

import org.fieldvault.KdfProfile;
import org.fieldvault.RecordInput;
import org.fieldvault.Vault;

/**
 * The Java side of embed.java.add and embed.java.list (bench/bench_embed.c
 * runs it and the C API in the same run): records like the C side's
 * (a title, a 300-byte narrative, 2 fields, a tag) added through the
 * binding, each durable on return, then listed `rounds` times; after a
 * warm-up vault of the same work, for the JIT. Prints "add RATE" and
 * "list RATE" (records per second) on stdout.
 *   JavaBench DIR N ROUNDS
 */
public final class JavaBench {
    private static String narrative(long seed) {
        String words = "the men came at night and took the cattle from the village by the river ";
        StringBuilder sb = new StringBuilder(300);
        int o = (int) (seed % words.length());
        while (sb.length() < 300)
            sb.append(words.charAt(o++ % words.length()));
        return sb.toString();
    }

    private static void add(Vault v, int i) throws Exception {
        int k = i % 1000000;
        try (RecordInput in = new RecordInput()) {
            in.title(String.format("Testimony %04d-%06d", 1, k))
              .narrative(narrative(i))
              .field("location", String.format("District %02d, village %03d", k % 97, k % 997))
              .field("date", String.format("2024-%02d-%02d", 1 + k % 12, 1 + k % 28))
              .tag("region-" + (char) ('a' + k % 26));
            v.add(in);
        }
    }

    private static double[] run(File dir, int n, int rounds) throws Exception {
        try (Vault v = Vault.create(dir, "correct horse battery staple".toCharArray(), KdfProfile.TEST)) {
            long t = System.nanoTime();
            for (int i = 0; i < n; i++)
                add(v, i);
            double add = n / ((System.nanoTime() - t) / 1e9);
            long[] seen = new long[1];
            t = System.nanoTime();
            for (int r = 0; r < rounds; r++)
                v.forEach(null, rec -> {
                    seen[0] += rec.title().length;
                    rec.close();
                    return true;
                });
            double list = (double) n * rounds / ((System.nanoTime() - t) / 1e9);
            if (seen[0] == 0)
                throw new IllegalStateException("nothing listed");
            return new double[] {add, list};
        }
    }

    public static void main(String[] args) throws Exception {
        File dir = new File(args[0]);
        int n = Integer.parseInt(args[1]), rounds = Integer.parseInt(args[2]);
        run(new File(dir, "warm"), Math.max(n / 4, 100), rounds); // the JIT's warm-up
        double[] r = run(new File(dir, "timed"), n, rounds);
        System.out.printf("add %.1f%nlist %.1f%n", r[0], r[1]);
    }
}
