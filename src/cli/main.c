/* placeholder */ static int unused_main;
int main(void)
{
    return unused_main;
}
