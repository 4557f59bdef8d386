package org.fieldvault.bench;

import java.io.BufferedReader;
import java.io.File;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;

import org.fieldvault.KdfProfile;
import org.fieldvault.RecordInput;
import org.fieldvault.Vault;

/**
 * The Java side of embed.java.add and embed.java.list, driven by
 * bench/bench_embed.c, which times the C API on the same work and
 * alternates with this process step by step (so that a change in the
 * machine's load falls on both sides). Records like the C side's (a title,
 * a 300-byte narrative, 2 fields, a tag), added through the binding, each
 * durable on return. Commands on stdin, one answer line on stdout each
 * (the wall time and this thread's CPU time, native calls included):
 *
 *   warm K R D a separate vault in directory D: K adds, R listings (the
 *              JIT's warm-up)
 *   add K      K more records in the timed vault: "t SECONDS CPU_SECONDS"
 *   list R     R listings of the timed vault: "t SECONDS CPU_SECONDS"
 *   quit
 *
 *   JavaBench DIR
 */
public final class JavaBench {
    private static final String WORDS =
            "the men came at night and took the cattle from the village by the river ";

    private static String narrative(long seed) {
        StringBuilder sb = new StringBuilder(300);
        int o = (int) (seed % WORDS.length());
        while (sb.length() < 300)
            sb.append(WORDS.charAt(o++ % WORDS.length()));
        return sb.toString();
    }

    /** n in `width` digits, as %0Nd (the C side's snprintf). */
    private static StringBuilder pad(StringBuilder sb, int n, int width) {
        String d = Integer.toString(n);
        for (int i = d.length(); i < width; i++)
            sb.append('0');
        return sb.append(d);
    }

    private static void add(Vault v, int i) throws Exception {
        int k = i % 1000000;
        StringBuilder title = pad(new StringBuilder("Testimony 0001-"), k, 6);
        StringBuilder place = pad(pad(new StringBuilder("District "), k % 97, 2).append(", village "),
                                  k % 997, 3);
        StringBuilder date = pad(pad(new StringBuilder("2024-"), 1 + k % 12, 2).append('-'), 1 + k % 28, 2);
        try (RecordInput in = new RecordInput()) {
            in.title(title.toString())
              .narrative(narrative(i))
              .field("location", place.toString())
              .field("date", date.toString())
              .tag("region-" + (char) ('a' + k % 26));
            v.add(in);
        }
    }

    private static long list(Vault v, int rounds) throws Exception {
        long[] seen = new long[1];
        for (int r = 0; r < rounds; r++)
            v.forEach(null, rec -> {
                seen[0] += rec.title().length;
                rec.close();
                return true;
            });
        return seen[0];
    }

    private static Vault create(File dir) throws Exception {
        return Vault.create(dir, "correct horse battery staple".toCharArray(), KdfProfile.TEST);
    }

    public static void main(String[] args) throws Exception {
        File dir = new File(args[0]);
        java.lang.management.ThreadMXBean threads = java.lang.management.ManagementFactory.getThreadMXBean();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        try (Vault timed = create(new File(dir, "timed"))) {
            int next = 0;
            String line;
            while ((line = in.readLine()) != null) {
                String[] w = line.trim().split(" ");
                long t = System.nanoTime(), cpu = threads.getCurrentThreadCpuTime();
                switch (w[0]) {
                case "warm":
                    try (Vault warm = create(new File(w[3]))) {
                        for (int i = 0; i < Integer.parseInt(w[1]); i++)
                            add(warm, i);
                        list(warm, Integer.parseInt(w[2]));
                    }
                    break;
                case "add":
                    for (int i = 0; i < Integer.parseInt(w[1]); i++)
                        add(timed, next++);
                    break;
                case "list":
                    if (list(timed, Integer.parseInt(w[1])) == 0 && next > 0)
                        throw new IllegalStateException("nothing listed");
                    break;
                case "quit":
                    return;
                default:
                    throw new IllegalArgumentException(line);
                }
                System.out.printf("t %.6f %.6f%n", (System.nanoTime() - t) / 1e9,
                                  (threads.getCurrentThreadCpuTime() - cpu) / 1e9);
                System.out.flush();
            }
        }
    }
}
